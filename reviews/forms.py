"""Forms of the reviewer pages. They only validate and shape input; views call the services.

A decision comes from one of four small forms (an option, a different instruction, take
over, halt). Each posts its `kind` so one URL takes them all.
"""

import json
from dataclasses import dataclass

from django import forms
from django.forms import BoundField

from escalations.models import Decision, Escalation
from escalations.problems import Problem
from escalations.services import DecisionRequest

JSON_TYPES = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true/false",
}


def args_field(key: str) -> str:
    return f"args-{key}"


def confirm_field(key: str) -> str:
    return f"confirm-{key}"


def _pretty(args) -> str:
    return "" if args is None else json.dumps(args, indent=2, ensure_ascii=False)


class DecisionForm(forms.Form):
    """What every decision form shares: the kind, the escalation, service errors by field."""

    KIND = ""
    kind = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args, escalation: Escalation, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.escalation = escalation
        self.fields["kind"].initial = self.KIND

    def clean_kind(self) -> str:
        if self.cleaned_data["kind"] != self.KIND:
            raise forms.ValidationError("does not match this form")
        return self.KIND

    def decision_request(self) -> DecisionRequest:
        return DecisionRequest(
            kind=self.KIND, instruction=self.cleaned_data.get("instruction") or ""
        )

    def service_field(self, name: str) -> str | None:
        """The form field a service's FieldError names, or None (shown above the form)."""
        return name if name in self.fields else None

    def add_problem(self, problem: Problem) -> None:
        """Show a service's 422 field errors next to the fields they name."""
        if not problem.errors:
            self.add_error(None, problem.detail)
        for error in problem.errors:
            field = self.service_field(error.field)
            message = error.message if field else f"{error.field}: {error.message}"
            self.add_error(field, message)


@dataclass
class OptionRow:
    """One option of the radio list, with its args editor and (if irreversible) confirmation."""

    option: dict
    checked: bool
    args: BoundField
    confirm: BoundField | None


class OptionDecisionForm(DecisionForm):
    KIND = Decision.Kind.OPTION
    option = forms.ChoiceField(error_messages={"required": "Pick one of the options."})
    instruction = forms.CharField(
        required=False,
        max_length=4000,
        label="Instruction (optional)",
        help_text="Sent to the agent with the option, e.g. a constraint to respect.",
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args, escalation: Escalation, **kwargs) -> None:
        super().__init__(*args, escalation=escalation, **kwargs)
        self.fields["option"].choices = [(o["key"], o["label"]) for o in escalation.options]
        self.fields["option"].initial = escalation.recommended_option["key"]
        for option in escalation.options:
            initial = _pretty(option.get("args"))
            rows = min(14, max(3, initial.count("\n") + 2))
            self.fields[args_field(option["key"])] = forms.CharField(
                required=False,
                strip=False,
                label=f"args of “{option['label']}”",
                initial=initial,
                widget=forms.Textarea(
                    attrs={"rows": rows, "spellcheck": "false", "wrap": "off", "class": "code"}
                ),
            )
            if option.get("irreversible"):
                self.fields[confirm_field(option["key"])] = forms.BooleanField(
                    required=False, label="I understand this cannot be undone"
                )

    def rows(self) -> list[OptionRow]:
        selected = self.data.get("option") if self.is_bound else self.fields["option"].initial
        return [
            OptionRow(
                option=option,
                checked=option["key"] == selected,
                args=self[args_field(option["key"])],
                confirm=self[confirm_field(option["key"])] if option.get("irreversible") else None,
            )
            for option in self.escalation.options
        ]

    def clean(self):
        data = super().clean()
        key = data.get("option")
        if not key:
            return data
        option = self.escalation.option(key)
        data["args"] = self._parse_args(key, data.get(args_field(key)) or "")
        if option.get("irreversible") and not data.get(confirm_field(key)):
            self.add_error(
                confirm_field(key),
                f"“{option['label']}” cannot be undone: tick the box to confirm.",
            )
        return data

    def _parse_args(self, key: str, raw: str) -> dict | None:
        """The edited args as an object; None (the agent's own args) when left empty."""
        field = args_field(key)
        if not raw.strip():
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            self.add_error(
                field,
                f"{self.fields[field].label} is not valid JSON: {exc.msg} "
                f"(line {exc.lineno}, column {exc.colno}).",
            )
            return None
        if not isinstance(value, dict):
            kind = "null" if value is None else JSON_TYPES.get(type(value), "not an object")
            self.add_error(
                field, f"{self.fields[field].label} must be a JSON object {{…}}, not {kind}."
            )
            return None
        return value

    def decision_request(self) -> DecisionRequest:
        data = self.cleaned_data
        return DecisionRequest(
            kind=self.KIND,
            option=data["option"],
            args=data.get("args"),
            instruction=data.get("instruction") or "",
        )

    def service_field(self, name: str) -> str | None:
        if name == "args" and self.cleaned_data.get("option"):
            return args_field(self.cleaned_data["option"])
        return super().service_field(name)


class InstructionDecisionForm(DecisionForm):
    KIND = Decision.Kind.INSTRUCTION
    instruction = forms.CharField(
        max_length=4000,
        label="Instruction",
        help_text="None of the options: tell the agent what to do instead.",
        error_messages={"required": "Write the instruction the agent should follow."},
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class StopDecisionForm(DecisionForm):
    """Take over or halt: both stop the run, so both need an explicit confirmation."""

    CONFIRM = ""
    confirm = forms.BooleanField(
        error_messages={"required": "Tick the box to confirm: the agent's run will stop."},
    )
    instruction = forms.CharField(
        required=False,
        max_length=4000,
        label="Note to the agent (optional)",
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args, escalation: Escalation, **kwargs) -> None:
        super().__init__(*args, escalation=escalation, **kwargs)
        self.fields["confirm"].label = self.CONFIRM


class TakeOverDecisionForm(StopDecisionForm):
    KIND = Decision.Kind.TAKE_OVER
    CONFIRM = "I take this run over: the agent stops and will not resume it"


class HaltDecisionForm(StopDecisionForm):
    KIND = Decision.Kind.HALT
    CONFIRM = "Halt the run: the agent abandons this step"


DECISION_FORMS: dict[str, type[DecisionForm]] = {
    form.KIND: form
    for form in (
        OptionDecisionForm,
        InstructionDecisionForm,
        TakeOverDecisionForm,
        HaltDecisionForm,
    )
}


def decision_form(data, *, escalation: Escalation) -> DecisionForm | None:
    """The bound form for a posted decision, or None for an unknown kind."""
    form_class = DECISION_FORMS.get(data.get("kind", ""))
    return form_class(data, escalation=escalation) if form_class else None


def decision_forms(
    escalation: Escalation, bound: DecisionForm | None = None
) -> dict[str, DecisionForm]:
    """Every decision form by kind, for the panel: the bound one (with its errors) and fresh ones."""
    return {
        kind: bound
        if bound is not None and kind == bound.KIND
        else form_class(escalation=escalation)
        for kind, form_class in DECISION_FORMS.items()
    }
