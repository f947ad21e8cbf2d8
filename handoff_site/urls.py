from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from .api import api

# /healthz, /readyz and /metrics are answered by operations.middleware, ahead of these.

# An error nothing else caught (a view, a middleware, the session): a database outage is
# a 503 there, not a 500 (handoff_site.outage).
handler500 = "handoff_site.outage.server_error"
# A signed-in user without a role sees why, where they are (people.views).
handler403 = "people.views.permission_denied"

urlpatterns = [
    path("api/v1/", api.urls),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("insights/", include("insights.urls")),
    path("", include("people.urls")),
    path("", include("notifications.urls")),
    path("", include("reviews.urls")),
]
