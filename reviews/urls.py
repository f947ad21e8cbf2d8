from django.conf import settings
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import path, re_path

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

if settings.DEBUG or settings.EMBEDDED or settings.TESTING:
    # Nothing else serves /static/ when one ASGI process serves everything (`make run`, the
    # browser tests): runserver's static handling does not apply under uvicorn. Behind the
    # production proxy, nginx answers /static/ before a request gets here.
    # TODO(site): move to handoff_site/asgi.py as ASGIStaticFilesHandler.
    urlpatterns.append(
        re_path(r"^static/(?P<path>.*)$", serve_static, {"insecure": True}, name="static")
    )
