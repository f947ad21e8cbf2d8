from django.urls import path

from . import views

app_name = "reviews"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("escalations/<uuid:escalation_id>", views.escalation_detail, name="detail"),
]
