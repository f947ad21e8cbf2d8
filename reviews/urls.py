from django.urls import path

from . import views

app_name = "reviews"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("escalations/<uuid:escalation_id>", views.escalation_detail, name="detail"),
    path("escalations/<uuid:escalation_id>/live", views.escalation_live, name="live"),
    path("escalations/<uuid:escalation_id>/decide", views.decide, name="decide"),
    path("escalations/<uuid:escalation_id>/claim", views.claim, name="claim"),
    path("escalations/<uuid:escalation_id>/release", views.release, name="release"),
    path("escalations/<uuid:escalation_id>/redeliver", views.redeliver, name="redeliver"),
]
