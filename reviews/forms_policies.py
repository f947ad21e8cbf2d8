"""Forms of the managers' policy pages. They validate and shape input; views call the services.

The rules' own checks (thresholds in order, minimums) are escalations.policy.rules_errors,
shared with the services, so a form and a direct service call refuse the same things, each
error next to the field it names.
"""

from typing import Any, cast

from django import forms
from django.contrib.auth import get_user_model

from escalations.errors import FieldError
from escalations.models import Escalation, Policy
from escalations.policy import RULE_FIELDS, Rules, rules_errors
from people.roles import MANAGER

from .forms import ServiceErrorsMixin

FLOOR_PREFIX = "floor_"
FLOOR_CHOICES = [("", "no floor"), ("2", "at least tier 2 (flagged)"), ("3", "at least tier 3 (a person)"), ("4", "tier 4 (halt)")]
FLOOR_FIELDS = [FLOOR_PREFIX + reason for reason in Escalation.Reason.values]
# Rule fields a valid form may leave out of cleaned_data (unticked boxes, empty lists).
OPTIONAL_RULE_FIELDS = ("auto_decide", "novelty_escalates", "machine_tiers", "tier_by_calibrated")

THRESHOLD_ATTRS = {"step": "0.01", "min": "0", "max": "1", "inputmode": "decimal"}


def _threshold(label: str, help_text: str) -> forms.FloatField:
    return forms.FloatField(
        label=label,
        help_text=help_text,
        min_value=0,
        max_value=1,
        widget=forms.NumberInput(attrs=THRESHOLD_ATTRS),
    )


def _minutes(label: str) -> forms.IntegerField:
    return forms.IntegerField(
        label=label,
        required=False,
        min_value=1,
        max_value=525_600,
        help_text="Minutes; empty: no deadline unless the package gives one.",
        widget=forms.NumberInput(attrs={"min": "1", "placeholder": "none"}),
    )


class PolicyForm(ServiceErrorsMixin, forms.Form):
    """A domain policy's settings, as a manager edits them."""

    description = forms.CharField(
        required=False, max_length=300, help_text="One line: what this domain covers."
    )
    autonomous_threshold = _threshold(
        "Autonomous from", "Confidence at or above this: tier 1, decided at once."
    )
    flag_threshold = _threshold(
        "Proceed with a flag from", "At or above this (below autonomous): tier 2, decided and flagged."
    )
    escalate_threshold = _threshold(
        "Escalate from", "At or above this (below the flag): tier 3, waits for a person. Below it: tier 4, halt."
    )
    retry_cap = forms.IntegerField(
        label="Retry cap",
        min_value=1,
        max_value=1000,
        help_text="A package whose attempts reach this is at least tier 3.",
    )
    scope_tolerance = forms.FloatField(
        label="Scope tolerance",
        min_value=0,
        max_value=100,
        help_text="0.5: the actual scope may exceed the planned one by 50% before it is at least tier 3.",
        widget=forms.NumberInput(attrs={"step": "0.05", "min": "0"}),
    )
    novelty_escalates = forms.BooleanField(
        required=False,
        label="Novelty rule: a novel situation is at least tier 3",
        help_text="Packages with reason “novelty” and gate calls with novel=true.",
    )
    auto_decide = forms.BooleanField(
        required=False,
        label="Auto-decide tiers 1 and 2",
        help_text="Off: every package waits in the queue for a person, whatever its tier.",
    )
    respond_minutes_tier3 = _minutes("Default respond-by, tier 3")
    respond_minutes_tier4 = _minutes("Default respond-by, tier 4")
    approvals_required = forms.IntegerField(
        label="Approvals for irreversible options",
        min_value=1,
        max_value=10,
        help_text="The two-person rule: 2 or more distinct reviewers must approve an irreversible option.",
    )
    tier_by_calibrated = forms.BooleanField(
        required=False,
        label="Tier by calibrated confidence",
        help_text=(
            "The thresholds read each agent's confidence as its judged history says it means "
            "(where it has enough: the escalation page says how many); the stated one otherwise."
        ),
    )
    machine_tiers = forms.TypedMultipleChoiceField(
        label="Tiers a machine reviewer may decide",
        choices=[(1, "Tier 1"), (2, "Tier 2"), (3, "Tier 3"), (4, "Tier 4")],
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: machines only advise. An irreversible option always needs a person.",
    )
    first_look_reviewer_id = forms.TypedChoiceField(
        label="First look by",
        coerce=int,
        empty_value=None,
        required=False,
        help_text="A machine reviewer offered each new tier-3 escalation before people are told.",
    )
    first_look_seconds = forms.IntegerField(
        label="First look budget (seconds)",
        required=False,
        min_value=5,
        max_value=3600,
        help_text="How long the machine has before the escalation goes to people.",
    )
    decision_lifetime_seconds = forms.IntegerField(
        label="Decision lifetime (seconds)",
        required=False,
        min_value=10,
        max_value=31_536_000,
        help_text="Empty: decisions do not expire. Set: an agent acking later gets 409 and must escalate again.",
        widget=forms.NumberInput(attrs={"min": "10", "placeholder": "no limit"}),
    )
    managers = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="People in the manager group who answer for this domain.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelMultipleChoiceField, self.fields["managers"]).queryset = (
            get_user_model().objects.filter(groups__name=MANAGER, is_active=True).order_by("username")
        )
        machines = get_user_model().objects.filter(profile__is_machine=True, is_active=True)
        cast(forms.TypedChoiceField, self.fields["first_look_reviewer_id"]).choices = [
            ("", "nobody: straight to people"),
            *((user.pk, user.get_username()) for user in machines.order_by("username")),
        ]
        for reason, label in Escalation.Reason.choices:
            self.fields[FLOOR_PREFIX + reason] = forms.TypedChoiceField(
                label=label, choices=FLOOR_CHOICES, coerce=int, empty_value=None, required=False
            )

    def floor_fields(self) -> list:
        """The bound fields of the per-reason floors, in the reasons' order."""
        return [self[name] for name in FLOOR_FIELDS]

    @staticmethod
    def initial_for(policy: Policy) -> dict[str, Any]:
        initial: dict[str, Any] = {name: getattr(policy, name) for name in RULE_FIELDS}
        initial["description"] = policy.description
        initial["managers"] = list(policy.managers.all()) if policy.pk else []
        for reason, tier in (policy.reason_floors or {}).items():
            initial[FLOOR_PREFIX + reason] = tier
        return initial

    def clean_first_look_seconds(self) -> int:
        return self.cleaned_data.get("first_look_seconds") or Rules.first_look_seconds

    def clean(self):
        super().clean()
        data = self.cleaned_data
        data["reason_floors"] = {
            reason: data[FLOOR_PREFIX + reason]
            for reason in Escalation.Reason.values
            if data.get(FLOOR_PREFIX + reason)
        }
        if all(name in data for name in RULE_FIELDS if name not in OPTIONAL_RULE_FIELDS):
            for name, message in rules_errors(self.rules()):
                if name not in self.errors:
                    self.add_error(name, message)
        return data

    def rules(self, domain: str = "", version: int = 0) -> Rules:
        """The rules as typed (valid fields only), for the backtest and the services."""
        typed: dict[str, Any] = {name: self.cleaned_data.get(name) for name in RULE_FIELDS}
        return Rules(domain=domain, version=version, **typed)

    def settings(self) -> dict[str, Any]:
        """What the services take: the rule fields, the description and the managers."""
        data = self.cleaned_data
        return {
            **{name: data[name] for name in RULE_FIELDS},
            "description": data["description"],
            "managers": list(data["managers"]),
        }

    def add_field_error(self, error: FieldError) -> None:
        """Each error next to its field (above the form otherwise), as the message alone."""
        self.add_error(error.field if error.field in self.fields else None, error.message)


class PolicyEditForm(PolicyForm):
    note = forms.CharField(
        required=False,
        max_length=300,
        label="Note for the history",
        help_text="Why this change (kept with the version).",
    )


class PolicyCreateForm(PolicyForm):
    domain = forms.SlugField(
        max_length=64,
        help_text="Lower-case letters, digits and hyphens; agents name it in their packages.",
    )
    field_order = ["domain", "description"]

    def clean_domain(self) -> str:
        domain = self.cleaned_data["domain"].lower()
        if domain == "new":
            raise forms.ValidationError("“new” is reserved; choose another name.")
        if Policy.objects.filter(domain=domain).exists():
            raise forms.ValidationError(f"A policy for “{domain}” exists already.")
        return domain
