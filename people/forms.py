"""The Members page's forms: they validate; people.services writes."""

from django import forms
from django.core.validators import URLValidator

from operations.egress import validate_outbound_url

from .roles import MANAGER, REVIEWER

ROLE_CHOICES = [(REVIEWER, "Reviewer: triages and decides"), (MANAGER, "Manager: also agents, policies, insights, members")]


class InviteForm(forms.Form):
    email = forms.EmailField(label="E-mail", max_length=254)
    username = forms.RegexField(
        label="Username",
        required=False,
        max_length=150,
        regex=r"^[\w.@+-]+$",
        help_text="Optional: the part of the e-mail before the @ otherwise.",
        error_messages={"invalid": "Use letters, digits and @ . + - _ only."},
    )
    role = forms.ChoiceField(label="Role", choices=ROLE_CHOICES, initial=REVIEWER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=[(REVIEWER, "Reviewer"), (MANAGER, "Manager")])


class MachineForm(forms.Form):
    is_machine = forms.BooleanField(label="Machine reviewer", required=False)


class MachineWebhookForm(forms.Form):
    """Where a machine reviewer's first looks are offered (a signed POST); empty: none."""

    webhook_url = forms.URLField(
        label="Webhook URL",
        required=False,
        max_length=500,
        assume_scheme="https",
        validators=[
            URLValidator(schemes=["http", "https"], message="Enter an http(s) URL."),
            validate_outbound_url,
        ],
        widget=forms.URLInput(attrs={"placeholder": "https://bots.example.com/handoff"}),
    )
