"""The notification preferences form: one row of channel boxes per event, and where to send."""

from django import forms
from django.core.validators import RegexValidator, URLValidator

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

    slack_user_id = forms.CharField(
        label="Slack member id",
        required=False,
        max_length=32,
        validators=[RegexValidator(r"^[UW][A-Z0-9]{2,31}$", "A Slack member id looks like U012AB3CD.")],
        help_text="In Slack: your profile → ⋮ → Copy member ID. With Handoff's Slack app, messages come "
        "to you there with decide buttons, and your clicks decide as you.",
    )

    def __init__(
        self, *args, kinds: list[Kind], email: str, slack_app: bool = False, push: tuple[bool, bool] = (False, False),
        **kwargs,
    ) -> None:
        """`slack_app`: the Slack app is set up; `push`: (web push is set up, this person has
        a subscribed browser)."""
        super().__init__(*args, **kwargs)
        self.kinds, self.email, self.slack_app, self.push = kinds, email, slack_app, push
        for kind in kinds:
            self.fields[event_field(kind)] = forms.MultipleChoiceField(
                label=kind.label,
                choices=Channel.choices,
                widget=forms.CheckboxSelectMultiple,
                required=False,
            )

    @classmethod
    def initial_for(cls, preference: NotificationPreference | None) -> dict:
        # An event missing from saved choices gets its default (rules.channels_for).
        choices = {**DEFAULT_CHOICES, **preference.choices} if preference else DEFAULT_CHOICES
        initial = {event_field(kind): channels for kind, channels in choices.items()}
        if preference:
            initial.update(
                slack_url=preference.slack_url, webhook_url=preference.webhook_url,
                slack_user_id=preference.slack_user_id,
            )
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
                if channel == Channel.SLACK and self.slack_app and data.get("slack_user_id"):
                    continue  # the Slack app messages the member
                if channel in chosen and field not in self.errors and not data.get(field):
                    self.add_error(field, f"Needed: {Channel(channel).label} is chosen for “{kind.label}”.")
            if Channel.PUSH in chosen and not all(self.push):
                self.add_error(
                    event_field(kind),
                    "Turn on browser push on this page first."
                    if self.push[0]
                    else "Browser push is not set up on this Handoff (VAPID keys).",
                )
        return data

    def choices(self) -> dict[str, list[str]]:
        return {kind.value: self.cleaned_data.get(event_field(kind)) or [] for kind in self.kinds}
