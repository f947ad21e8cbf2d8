"""The queue's filters (django-filter): every one a URL parameter, so a view is a link.

The tab (open, mine, flagged, overdue, decided today, closed) and the sort are fields of the same
form; an invalid value of any field is reported under that field and left out, and an
invalid tab or sort falls back to the default rather than widening the list. The reviewer
API (reviews.api) takes the same parameters and answers 400 for any invalid one.
"""

from datetime import UTC, date, datetime, time, timedelta
from typing import cast

import django_filters
from django import forms
from django.db.models import Q
from django.utils import timezone

from escalations.models import Agent, Escalation, EscalationQuerySet, Policy
from escalations.selectors import escalations_for_reviewer
from reviews.templatetags.review_tags import TIER_NAMES

from . import queue


class YesNoField(forms.NullBooleanField):
    """true / false / empty (any). Django's NullBooleanField reads any other value as empty,
    which would drop the filter without a word: here it is an error."""

    VALUES = {"true": True, "True": True, "1": True, "false": False, "False": False, "0": False}

    def to_python(self, value):
        if value in (None, "", True, False):
            return None if value == "" else value
        if value not in self.VALUES:
            raise forms.ValidationError("must be true or false", code="invalid")
        return self.VALUES[value]


class YesNoFilter(django_filters.BooleanFilter):
    field_class = YesNoField


def yes_no(label: str, yes: str, no: str) -> dict:
    """Arguments of a YesNoFilter shown as a select: Any / yes / no."""
    return {"label": label, "widget": forms.Select(choices=(("", "Any"), ("true", yes), ("false", no)))}


# Callables: read when the select is drawn or a value is checked, so a request that does not
# filter by agent or domain (the live row view, mostly) does not read them.
def agent_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in Agent.objects.order_by("name").values_list("name", flat=True)]


def domain_choices() -> list[tuple[str, str]]:
    return [(domain, domain) for domain in Policy.objects.order_by("domain").values_list("domain", flat=True)]


def utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


class QueueForm(forms.Form):
    tab = forms.ChoiceField(choices=[(t.key, t.label) for t in queue.TABS], required=False)
    sort = forms.ChoiceField(
        choices=[(s.key, s.label) for s in queue.SORTS.values()], required=False, label="Sort by"
    )


class QueueFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(
        method="search", label="Search", max_length=200, help_text="Title and uncertainty"
    )
    # Withdrawn escalations are in no tab (no decision, not open): no option for them.
    status = django_filters.ChoiceFilter(
        choices=[c for c in Escalation.Status.choices if c[0] != Escalation.Status.WITHDRAWN],
        empty_label="Any",
    )
    tier = django_filters.ChoiceFilter(
        choices=[(tier, f"T{tier} · {name}") for tier, name in TIER_NAMES.items()], empty_label="Any"
    )
    reason = django_filters.ChoiceFilter(choices=Escalation.Reason.choices, empty_label="Any")
    agent = django_filters.ChoiceFilter(
        method="filter_agent", label="Agent", empty_label="Any", choices=agent_choices
    )
    domain = django_filters.ChoiceFilter(empty_label="Any", choices=domain_choices)
    impact = django_filters.ChoiceFilter(choices=Escalation.Impact.choices, empty_label="Any")
    blocking = YesNoFilter(**yes_no("Blocking", "Blocking", "Not blocking"))
    overdue = YesNoFilter(method="filter_overdue", **yes_no("Overdue", "Overdue", "Not overdue"))
    claimed = django_filters.ChoiceFilter(
        label="Claimed by",
        method="filter_claimed",
        empty_label="Anyone",
        choices=(("me", "Me"), ("others", "Someone else"), ("unclaimed", "Nobody")),
    )
    irreversible = YesNoFilter(
        field_name="is_irreversible", **yes_no("Irreversible", "Irreversible", "Reversible")
    )
    # Whole UTC days, both ends included: the days the insights page counts escalations by.
    created_from = django_filters.DateFilter(
        method="filter_created_from",
        label="Created from",
        help_text="A UTC day (YYYY-MM-DD), included",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    created_to = django_filters.DateFilter(
        method="filter_created_to",
        label="Created to",
        help_text="A UTC day (YYYY-MM-DD), included",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    class Meta:
        model = Escalation
        form = QueueForm
        fields: list[str] = []

    def __init__(self, data=None, *, request, now: datetime | None = None) -> None:
        self.now = now or timezone.now()
        super().__init__(data, queryset=escalations_for_reviewer(request.user), request=request)

    # The tab and the sort: valid values, or the defaults.
    @property
    def tab(self) -> str:
        return self._cleaned("tab") or "open"

    @property
    def sort(self) -> str:
        return self._cleaned("sort") or queue.DEFAULT_SORT

    def _cleaned(self, name: str) -> str:
        self.is_valid()
        return self.form.cleaned_data.get(name) or ""

    @property
    def active(self) -> int:
        """How many filters narrow the list (tab and sort aside)."""
        self.is_valid()
        return sum(
            1 for name in self.filters if self.form.cleaned_data.get(name) not in (None, "")
        )

    def filter_queryset(self, queryset: EscalationQuerySet) -> EscalationQuerySet:
        queryset = queue.in_tab(queryset, self.tab, user=self.request.user, now=self.now)
        for name, value in self.form.cleaned_data.items():
            if name in self.filters:  # the tab and the sort are form fields, not filters
                queryset = self.filters[name].filter(queryset, value)
        return queryset

    def search(self, queryset, name, value: str):
        return queue.matching(queryset, value)

    def filter_agent(self, queryset, name, value: str):
        """By the agent's id, not a join on its name: the planner then reads that agent's
        rows from its own index (esc_open_agent_priority_idx) instead of walking the whole
        queue when another filter leaves few or none."""
        agent_id = Agent.objects.filter(name=value).values_list("id", flat=True).first()
        return queryset.filter(agent_id=agent_id) if agent_id else queryset.none()

    def filter_overdue(self, queryset, name, value: bool):
        late = Q(respond_by__lt=self.now)
        return queryset.filter(late) if value else queryset.exclude(late)

    def filter_created_from(self, queryset, name, value: date):
        return queryset.filter(created_at__gte=utc_midnight(value))

    def filter_created_to(self, queryset, name, value: date):
        return queryset.filter(created_at__lt=utc_midnight(value + timedelta(days=1)))

    def filter_claimed(self, queryset, name, value: str):
        user, now = self.request.user, self.now
        if value == "me":
            return queryset.filter(queue.live_claim_by(user, now))
        if value == "others":
            return queryset.filter(queue.live_claim(now)).exclude(claimed_by=user)
        return queryset.exclude(queue.live_claim(now))


# ---------------------------------------------------------------- the API's description


def _parameter_schema(
    choices, *, boolean: bool = False, day: bool = False, max_length: int | None = None
) -> dict:
    """A parameter's values; where it has a set of values, the empty value too (any)."""
    if day:
        return {"anyOf": [{"type": "string", "format": "date"}, {"const": ""}]}
    if boolean:
        return {"anyOf": [{"type": "boolean"}, {"const": ""}]}
    if choices is not None and not callable(choices):
        values = [value for value, _ in choices if value != ""]
        if all(isinstance(value, int) for value in values):
            return {"anyOf": [{"type": "integer", "enum": values}, {"const": ""}]}
        return {"type": "string", "enum": ["", *(str(value) for value in values)]}
    return {"type": "string", **({"maxLength": max_length} if max_length else {})}


def queue_parameters() -> list[dict]:
    """The filter set's parameters as OpenAPI query parameters (the reviewer API's queue).
    Choices from the database (agents, domains) are not listed: any name is a string."""
    notes = {
        "status": "The escalation's status. Empty: any.",
        "tier": "The tier the policy gave. Empty: any.",
        "reason": "Why the agent escalated. Empty: any.",
        "impact": "The cost of delay's impact. Empty: any.",
        "agent": "An agent's name (unknown: 400). Empty: any.",
        "domain": "A policy's domain (unknown: 400). Empty: any.",
        "created_from": "Created on or after this UTC day (YYYY-MM-DD). Empty: any.",
        "created_to": "Created on or before this UTC day (YYYY-MM-DD). Empty: any.",
        "tab": "Which list. Empty: open (the open escalations); closed: every escalation no longer open.",
        "sort": f"The order; a cursor belongs to one sort. Empty: {queue.DEFAULT_SORT}.",
    }
    schemas = {
        name: _parameter_schema(
            filter_.extra.get("choices"),
            boolean=isinstance(filter_, django_filters.BooleanFilter),
            day=isinstance(filter_, django_filters.DateFilter),
            max_length=filter_.extra.get("max_length"),
        )
        for name, filter_ in QueueFilter.base_filters.items()
    }
    labels = {name: filter_.extra.get("help_text") or filter_.label for name, filter_ in QueueFilter.base_filters.items()}
    for name, field in QueueForm.base_fields.items():
        schemas[name] = _parameter_schema(cast(forms.ChoiceField, field).choices)
        labels[name] = field.label
    return [
        {
            "in": "query",
            "name": name,
            "required": False,
            "schema": schema,
            "description": notes.get(name) or f"{labels[name] or name}. Empty: any.",
        }
        for name, schema in schemas.items()
    ]
