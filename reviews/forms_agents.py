"""Forms of the managers' agents page: register, settings, token rotation. They validate
and shape input; the views call escalations.services, whose field errors land here too."""

from typing import cast

from django import forms
from django.core.validators import URLValidator

from escalations import selectors
from escalations.models import Agent
from operations.egress import validate_outbound_url

from .forms import ServiceErrorsMixin

# The largest budget the column stores (PositiveIntegerField on every backend).
MAX_BUDGET = 2_147_483_647


class AgentSettingsForm(ServiceErrorsMixin, forms.Form):
    """What a manager sets on an agent: where it is resumed, its domain and its budget."""

    domain = forms.ChoiceField(
        help_text="The policy that tiers its escalations and gate checks.",
    )
    resume_url = forms.CharField(
        required=False,
        max_length=500,
        label="Resume URL",
        help_text="Where decisions are POSTed (signed). Leave empty if the agent polls instead.",
        validators=[
            URLValidator(
                schemes=["http", "https"],
                message="Enter an http(s) URL, e.g. https://agent.example.com/handoff/resume.",
            ),
            validate_outbound_url,
        ],
        widget=forms.URLInput(attrs={"placeholder": "https://agent.example.com/handoff/resume"}),
    )
    daily_budget = forms.IntegerField(
        min_value=0,
        max_value=MAX_BUDGET,
        initial=50,
        label="Daily budget",
        help_text="Escalations per UTC day. Going over is shown to managers, never refused.",
        error_messages={"min_value": "The budget must be 0 or more."},
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        domains = selectors.policy_domains()
        cast(forms.ChoiceField, self.fields["domain"]).choices = [(d, d) for d in domains]
        self.fields["domain"].error_messages["invalid_choice"] = (
            f"Unknown domain %(value)s; known: {', '.join(domains) or 'none yet'}."
        )


class AgentRegisterForm(AgentSettingsForm):
    name = forms.CharField(
        max_length=100,
        help_text="Unique; shown on every escalation it posts.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "autofocus": True}),
    )
    field_order = ["name", "domain", "resume_url", "daily_budget"]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if Agent.objects.filter(name__iexact=name).exists():
            raise forms.ValidationError(f"An agent named “{name}” already exists.")
        return name


class AgentEditForm(AgentSettingsForm):
    is_active = forms.BooleanField(
        required=False,
        label="Active",
        help_text="An inactive agent's tokens are refused (401) until it is active again.",
    )

    @classmethod
    def for_agent(cls, agent: Agent) -> "AgentEditForm":
        return cls(
            initial={
                "domain": agent.domain,
                "resume_url": agent.resume_url,
                "daily_budget": agent.daily_budget,
                "is_active": agent.is_active,
            }
        )


class TokenRotateForm(forms.Form):
    revoke_others = forms.BooleanField(
        required=False,
        label="Also revoke its current tokens now",
        help_text="Requests with them are refused at once. Leave unticked to switch over first.",
    )
