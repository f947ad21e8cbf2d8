from django.urls import path

from . import views, views_inbound

app_name = "notifications"

urlpatterns = [
    path("settings/notifications", views.preferences, name="preferences"),
    path("settings/notifications/secret", views.secret_rotate, name="secret"),
    path("settings/notifications/test", views.send_test, name="test"),
    path("settings/notifications/recent", views.recent, name="recent"),
    path("settings/notifications/push", views.push_subscribe, name="push-subscribe"),
    path("settings/notifications/push/remove", views.push_unsubscribe, name="push-unsubscribe"),
    path("sw.js", views.service_worker, name="service-worker"),
    path("integrations/slack/interactivity", views_inbound.slack_interactivity, name="slack-interactivity"),
    path("notifications/act/<str:token>", views_inbound.action_link, name="action"),
]
