"""The escalation levels form of a domain: one small form per level, in a formset.

Forms only validate and shape input; views_levels calls services.policy_levels_replace.
"""

from typing import cast

from django import forms

from escalations import levels, selectors
from escalations.errors import FieldError
from escalations.models import EscalationLevel
from escalations.services import LevelSpec

from .refusals import ShowsRefusals


class LevelForm(forms.Form):
    after_minutes = forms.IntegerField(
        label="After (minutes)",
        min_value=1,
        max_value=levels.MAX_AFTER_MINUTES,
        help_text="Counted from when the escalation arrived.",
    )
    priority_boost = forms.IntegerField(
        label="Priority boost",
        min_value=0,
        max_value=100,
        initial=10,
        help_text="Added on top of the lower levels' boosts.",
    )
    notify = forms.ModelMultipleChoiceField(
        label="Notify",
        queryset=selectors.reviewers_assignable(),
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    notify_managers = forms.BooleanField(label="Also notify the domain's managers", required=False)

    @staticmethod
    def initial_of(row: EscalationLevel) -> dict:
        return {
            "after_minutes": row.after_minutes,
            "priority_boost": row.priority_boost,
            "notify": [user.pk for user in row.notify.all()],
            "notify_managers": row.notify_managers,
        }


class BaseLevelFormSet(ShowsRefusals, forms.BaseFormSet):
    def kept(self) -> list[LevelForm]:
        """The forms that make a level: the existing ones and the filled-in new ones, less
        those marked for deletion."""
        initial = self.initial_form_count()
        return [
            form
            for index, form in enumerate(self.forms)
            if (index < initial or form.has_changed())
            and not self._should_delete_form(form)  # type: ignore[attr-defined]
        ]

    def clean(self) -> None:
        """The checks across levels (distinct delays, how many), beside each row's own."""
        kept = [form for form in self.kept() if hasattr(form, "cleaned_data")]
        # A row whose delay is itself invalid gets a placeholder no real delay can equal.
        rows = [
            (f.cleaned_data.get("after_minutes", -1 - i), f.cleaned_data.get("priority_boost", 0))
            for i, f in enumerate(kept)
        ]
        for index, field, message in levels.rows_errors(rows):
            if index >= len(kept):
                raise forms.ValidationError(message)
            if field not in kept[index].errors and field in kept[index].cleaned_data:
                kept[index].add_error(field, message)

    def specs(self) -> list[LevelSpec]:
        return [
            LevelSpec(
                after_minutes=form.cleaned_data["after_minutes"],
                priority_boost=form.cleaned_data["priority_boost"],
                notify=list(form.cleaned_data["notify"]),
                notify_managers=form.cleaned_data["notify_managers"],
            )
            for form in self.kept()
        ]

    def add_field_error(self, error: FieldError) -> None:
        """A service's error (`levels.<row>.<field>`) next to the field it names."""
        kept = self.kept()
        _, row, field = [*error.field.split("."), "", ""][:3]
        if row.isdigit() and int(row) < len(kept) and field in LevelForm.base_fields:
            kept[int(row)].add_error(field, error.message)
        else:
            self.add_form_error(error.message)

    def add_form_error(self, message: str) -> None:
        self._non_form_errors = self.error_class([*self.non_form_errors(), message])


LevelFormSet = cast(type[BaseLevelFormSet], forms.formset_factory(
    LevelForm,
    formset=BaseLevelFormSet,
    extra=1,
    can_delete=True,
    max_num=levels.MAX_LEVELS,
    validate_max=True,
))
