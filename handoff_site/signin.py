"""Sign-in throttling's answer (django-axes' AXES_LOCKOUT_CALLABLE): the login page again,
with a message saying why and for how long, as 429."""

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import render


def locked_out(request, original_response=None, credentials=None):
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    form = AuthenticationForm(request, initial={"username": username})
    message = (
        f"Too many failed sign-ins for this account or from this address. Sign-in is paused "
        f"for {minutes} minutes; try again later, or ask an administrator to lift it."
    )
    context = {"form": form, "locked_out": message, "next": request.POST.get("next", "")}
    return render(request, "registration/login.html", context, status=429)
