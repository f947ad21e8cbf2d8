"""The insights page's filter form: a date range, an agent and a domain, all in the URL."""

from datetime import date, timedelta
from typing import cast

from django import forms
from django.core.exceptions import ValidationError
from django.http import QueryDict

from escalations.models import Agent, Policy

from .selectors import Filters

DEFAULT_WEEKS = 8
MAX_DAYS = 366
EARLIEST = date(2000, 1, 1)


def default_range(today: date) -> tuple[date, date]:
    """The last DEFAULT_WEEKS weeks, from a Monday, so every weekly point is a whole week."""
    monday = today - timedelta(days=today.weekday())
    return monday - timedelta(weeks=DEFAULT_WEEKS - 1), today


def with_default_range(query: QueryDict, today: date) -> QueryDict:
    """The query with the default dates filled in when it gives neither (so the form shows them)."""
    if query.get("start") or query.get("end"):
        return query
    query = query.copy()
    start, end = default_range(today)
    query["start"], query["end"] = start.isoformat(), end.isoformat()
    return query


class InsightsFilterForm(forms.Form):
    start = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    agent = forms.ModelChoiceField(
        queryset=Agent.objects.order_by("name"),
        required=False,
        to_field_name="name",
        empty_label="All agents",
    )
    domain = forms.ChoiceField(required=False)

    def __init__(self, *args, today: date, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.today = today
        domains = Policy.objects.order_by("domain").values_list("domain", flat=True)
        cast(forms.ChoiceField, self.fields["domain"]).choices = [
            ("", "All domains"),
            *((d, d) for d in domains),
        ]
        start, end = default_range(today)
        self.fields["start"].widget.attrs["placeholder"] = start.isoformat()
        self.fields["end"].widget.attrs["placeholder"] = end.isoformat()

    def _within_bounds(self, name: str) -> date | None:
        value = self.cleaned_data.get(name)
        low, high = EARLIEST, self.today + timedelta(days=MAX_DAYS)
        if value is not None and not low <= value <= high:
            raise ValidationError(f"must be between {low.isoformat()} and {high.isoformat()}")
        return value

    def clean_start(self) -> date | None:
        return self._within_bounds("start")

    def clean_end(self) -> date | None:
        return self._within_bounds("end")

    def clean(self):
        super().clean()
        data = self.cleaned_data
        default_start, default_end = default_range(self.today)
        start, end = data.get("start"), data.get("end")
        if end is None:
            end = max(default_end, start) if start else default_end
        if start is None:
            start = end - (default_end - default_start)
        data["start"], data["end"] = start, end
        if data["start"] > data["end"]:
            raise ValidationError({"end": "must be on or after the start date"})
        if (data["end"] - data["start"]).days + 1 > MAX_DAYS:
            raise ValidationError({"end": f"the range can be at most {MAX_DAYS} days"})
        return data

    def filters(self) -> Filters:
        """The valid choices, or the defaults (last 8 weeks, everything) when invalid."""
        if not self.is_valid():
            start, end = default_range(self.today)
            return Filters(start, end)
        agent = self.cleaned_data.get("agent")
        return Filters(
            self.cleaned_data["start"],
            self.cleaned_data["end"],
            agent.pk if agent else None,
            self.cleaned_data.get("domain") or None,
        )
