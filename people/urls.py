from django.urls import path

from . import oidc, views

app_name = "people"

urlpatterns = [
    path("members/", views.members, name="members"),
    path("members/invite", views.member_invite, name="invite"),
    path("members/<int:user_id>/role", views.member_role, name="role"),
    path("members/<int:user_id>/machine", views.member_machine, name="machine"),
    path("members/<int:user_id>/webhook", views.member_webhook, name="webhook"),
    path("members/<int:user_id>/remove", views.member_remove, name="remove"),
    path("accounts/set-password/<uidb64>/<token>/", views.SetPasswordView.as_view(), name="set_password"),
    path("accounts/password-set", views.password_set, name="password_set"),
    path("accounts/no-role", views.no_role, name="no_role"),
    path("accounts/oidc/start", oidc.oidc_start, name="oidc_start"),
    path("accounts/oidc/callback", oidc.oidc_callback, name="oidc_callback"),
]
