"""The notification settings page: what reaches a person, where, a test, and what was sent."""

import json
from typing import cast

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.templatetags.static import static
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from people.roles import is_manager, reviewer_required

from . import push, rules, selectors, services, slack
from .forms import PreferencesForm
from .models import Channel, Notification

PAGE = "notifications/preferences.html"
REVEAL = "notifications.new_secret"  # a new secret waits in the session for one page view


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _form(request: HttpRequest, data=None) -> PreferencesForm:
    preference = selectors.preference_of(request.user)
    return PreferencesForm(
        data,
        initial=PreferencesForm.initial_for(preference),
        kinds=rules.kinds_for(is_manager=is_manager(request.user)),
        email=cast(AbstractUser, request.user).email,  # the views need a signed-in user
        slack_app=slack.configured(),
        push=(push.configured(), bool(selectors.push_endpoints(request.user))),
    )


def _recent(request: HttpRequest, **extra) -> dict:
    """The recent messages, and whether some are still on their way (the list then
    refreshes itself until they settle)."""
    recent = selectors.recent_for(request.user)
    settling = any(n.status in (Notification.Status.PENDING, Notification.Status.SENDING) for n in recent)
    return {"recent": recent, "settling": settling, **extra}


def _context(request: HttpRequest, form: PreferencesForm, **extra) -> dict:
    return {
        "form": form,
        "preference": selectors.preference_of(request.user),
        "channels": Channel.choices,
        "vapid_public_key": settings.VAPID_PUBLIC_KEY if push.configured() else "",
        "push_endpoints": selectors.push_endpoints(request.user),
        "slack_app": slack.configured(),
        **_recent(request),
        **extra,
    }


@reviewer_required
@require_http_methods(["GET", "POST"])
def preferences(request: HtmxHttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = _form(request, request.POST)
        if form.is_valid():
            _, secret = services.preferences_save(
                user=request.user,
                choices=form.choices(),
                slack_url=form.cleaned_data["slack_url"],
                webhook_url=form.cleaned_data["webhook_url"],
                slack_user_id=form.cleaned_data["slack_user_id"],
            )
            if secret:
                request.session[REVEAL] = secret
            messages.success(request, "Notification settings saved.")
            return redirect("notifications:preferences")
        return TemplateResponse(request, PAGE, _context(request, form), status=422)
    context = _context(request, _form(request), new_secret=request.session.pop(REVEAL, None))
    return TemplateResponse(request, PAGE, context)


@reviewer_required
@require_POST
def secret_rotate(request: HtmxHttpRequest) -> HttpResponse:
    request.session[REVEAL] = services.webhook_secret_rotate(user=request.user)
    messages.success(request, "New signing secret created; the old one no longer signs.")
    return redirect("notifications:preferences")


@reviewer_required
@require_POST
def send_test(request: HtmxHttpRequest) -> HttpResponse:
    sent = services.notification_test(user=request.user)
    if sent:
        names = ", ".join(dict.fromkeys(row.get_channel_display() for row in sent))
        notice = f"Test queued: {names}. Its status shows below in a moment."
    else:
        notice = "Nothing to test yet: set up a channel (an e-mail address, Slack or a webhook) first."
    if not request.htmx:
        messages.info(request, notice)
        return redirect("notifications:preferences")
    return TemplateResponse(request, f"{PAGE}#recent", _recent(request, test_notice=notice))


@reviewer_required
@require_GET
def recent(request: HtmxHttpRequest) -> HttpResponse:
    if not request.htmx:
        return redirect("notifications:preferences")
    return TemplateResponse(request, f"{PAGE}#recent", _recent(request))


@reviewer_required
@require_POST
def push_subscribe(request: HtmxHttpRequest) -> HttpResponse:
    """This browser's Push API subscription (PushSubscription.toJSON()), as JSON."""
    if not push.configured():
        return JsonResponse({"detail": "Browser push is not set up on this Handoff."}, status=404)
    try:
        body = json.loads(request.body)
        keys = body.get("keys") or {}
        push.subscribe(
            user=request.user, endpoint=str(body["endpoint"]), p256dh=str(keys.get("p256dh", "")),
            auth=str(keys.get("auth", "")),
        )
    except (ValueError, KeyError, AttributeError):
        return JsonResponse({"detail": "Expected a push subscription as JSON."}, status=400)
    except ValidationError as exc:
        return JsonResponse({"detail": " ".join(exc.messages)}, status=422)
    return JsonResponse({"subscribed": True}, status=201)


@reviewer_required
@require_POST
def push_unsubscribe(request: HtmxHttpRequest) -> HttpResponse:
    try:
        endpoint = str(json.loads(request.body)["endpoint"])
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"detail": "Expected {\"endpoint\": …}."}, status=400)
    return JsonResponse({"removed": push.unsubscribe(user=request.user, endpoint=endpoint)})


@login_not_required
@require_GET
def service_worker(request: HttpRequest) -> HttpResponse:
    """The service worker at the site's root (its scope is every page): shows pushes and
    opens the escalation a notification is about."""
    icon = static("icons/icon-192.png")
    response = TemplateResponse(request, "notifications/sw.js", {"icon": icon}, content_type="application/javascript")
    response["Cache-Control"] = "no-cache"
    return response
