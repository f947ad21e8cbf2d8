from django.urls import path

from . import views

urlpatterns = [path("escalation", views.escalation)]
