"""The notification preferences form: one row of channel boxes per event, and where to send."""

from django import forms
from django.core.validators import URLValidator

from operations.egress import validate_outbound_url

from .models import Channel, Kind, NotificationPreference
from .rules import DEFAULT_CHOICES


class HttpUrlField(forms.URLField):
    """A URL Handoff can POST to: http or https only (no ftp, no javascript:), on an
    address the SSRF rules allow (operations.egress)."""

    default_validators = [URLValidator(schemes=["http", "https"]), validate_outbound_url]


def event_field(kind: str) -> str:
    return f"event_{kind}"


class PreferencesForm(forms.Form):
    slack_url = HttpUrlField(
        label="Slack incoming webhook URL",
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text="From Slack: Apps → Incoming Webhooks → Add to a channel. Posted as {\"text\": …}.",
    )
    webhook_url = HttpUrlField(
        label="Webhook URL",
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text="Receives signed JSON (Handoff-Signature, like agents' resume webhooks).",
    )

    def __init__(self, *args, kinds: list[Kind], email: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kinds, self.email = kinds, email
        for kind in kinds:
            self.fields[event_field(kind)] = forms.MultipleChoiceField(
                label=kind.label,
                choices=Channel.choices,
                widget=forms.CheckboxSelectMultiple,
                required=False,
            )

    @classmethod
    def initial_for(cls, preference: NotificationPreference | None) -> dict:
        choices = preference.choices if preference else DEFAULT_CHOICES
        initial = {event_field(kind): channels for kind, channels in choices.items()}
        if preference:
            initial.update(slack_url=preference.slack_url, webhook_url=preference.webhook_url)
        return initial

    def rows(self) -> list[tuple[Kind, forms.BoundField]]:
        return [(kind, self[event_field(kind)]) for kind in self.kinds]

    def clean(self) -> dict:
        super().clean()
        data = self.cleaned_data
        needs = {Channel.SLACK: "slack_url", Channel.WEBHOOK: "webhook_url"}
        for kind in self.kinds:
            chosen = data.get(event_field(kind)) or []
            if Channel.EMAIL in chosen and not self.email:
                self.add_error(
                    event_field(kind),
                    "Your account has no e-mail address: ask an administrator to add one, "
                    "or choose another channel.",
                )
            for channel, field in needs.items():
                if channel in chosen and field not in self.errors and not data.get(field):
                    self.add_error(field, f"Needed: {Channel(channel).label} is chosen for “{kind.label}”.")
        return data

    def choices(self) -> dict[str, list[str]]:
        return {kind.value: self.cleaned_data.get(event_field(kind)) or [] for kind in self.kinds}
