from django.urls import path

from . import views

app_name = "notifications"

urlpatterns = [
    path("settings/notifications", views.preferences, name="preferences"),
    path("settings/notifications/secret", views.secret_rotate, name="secret"),
    path("settings/notifications/test", views.send_test, name="test"),
    path("settings/notifications/recent", views.recent, name="recent"),
]
