"""Notifications in Django's admin: read-only, for an operator looking into what failed."""

from django.contrib import admin

from .models import InboundAction, Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "channel", "recipient", "status", "attempts", "last_error")
    list_filter = ("status", "kind", "channel")
    search_fields = ("recipient", "subject", "target")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(InboundAction)
class InboundActionAdmin(admin.ModelAdmin):
    """Every decision attempted from Slack or an e-mail link, decided or refused (read-only)."""

    list_display = ("at", "via", "outcome", "user", "external_user", "escalation", "option_key", "reason")
    list_filter = ("via", "outcome")
    search_fields = ("external_user", "option_key", "reason")
    date_hierarchy = "at"
    ordering = ("-at",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
