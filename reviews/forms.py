"""Forms of the reviewer pages. They only validate and shape input; views call the services.

A decision comes from one of four small forms (an option, a different instruction, take
over, halt). Each posts its `kind` so one URL takes them all.
"""

import json
from dataclasses import dataclass
from typing import cast

from django import forms
from django.forms import BoundField

from escalations import selectors
from escalations.errors import FieldError
from escalations.jsontext import BadJson, read_json
from escalations.limits import TEXT_MAX_CHARS
from escalations.models import Decision, Escalation, FlagReview
from escalations.services import DecisionRequest
from escalations.services.claims import claimed_by_other

from .refusals import ShowsRefusals

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


class ServiceErrorsMixin(ShowsRefusals, forms.BaseForm):
    """Shows a service's refusal on the form: field errors next to the fields they name."""

    def service_field(self, name: str) -> str | None:
        """The form field a service's FieldError names, or None (shown above the form)."""
        return name if name in self.fields else None

    def add_field_error(self, error: FieldError) -> None:
        field = self.service_field(error.field)
        # A field's own error reads alone; one inside it (args.paths.0) says where.
        nested = field and "." in error.field
        message = error.message if field and not nested else f"{error.field}: {error.message}"
        self.add_error(field, message)

    def add_form_error(self, message: str) -> None:
        self.add_error(None, message)


class DecisionForm(ServiceErrorsMixin, forms.Form):
    """What every decision form shares: the kind, the escalation, service errors by field,
    and the confirmation to decide over someone else's live claim (given `user`)."""

    KIND = ""
    kind = forms.CharField(widget=forms.HiddenInput)
    override_claim = forms.BooleanField(required=False)

    def __init__(self, *args, escalation: Escalation, user=None, **kwargs) -> None:
        # The panel shows one form a kind: each kind's fields get ids of their own, so a
        # label names its own box (the option form keeps Django's "id_" ids).
        kwargs.setdefault("auto_id", "id_%s" if self.KIND == Decision.Kind.OPTION else f"{self.KIND}-%s")
        super().__init__(*args, **kwargs)
        self.escalation = escalation
        self.user = user
        self.fields["kind"].initial = self.KIND
        self.fields["override_claim"].label = f"Decide anyway, over {self.claim_holder}’s claim"

    @property
    def claim_holder(self) -> str:
        """Who else holds a live claim on the escalation ("" when nobody else does): the
        decision service's rule (claims.claimed_by_other), shown before it refuses."""
        escalation = self.escalation
        if self.user is None or not claimed_by_other(escalation, self.user):
            return ""
        return escalation.claimed_by.get_username() if escalation.claimed_by else ""

    def clean_kind(self) -> str:
        if self.cleaned_data["kind"] != self.KIND:
            raise forms.ValidationError("does not match this form")
        return self.KIND

    def add_claimed(self, holder: str) -> None:
        """The decision service refused over `holder`'s live claim: ask to decide anyway."""
        self.add_error(
            "override_claim", f"{holder} has claimed this: tick the box to decide over their claim."
        )

    def decision_request(self) -> DecisionRequest:
        return DecisionRequest(
            kind=self.KIND, instruction=self.cleaned_data.get("instruction") or ""
        )


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
        max_length=TEXT_MAX_CHARS,
        label="Instruction (optional)",
        help_text="Sent to the agent with the option, e.g. a constraint to respect.",
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args, escalation: Escalation, **kwargs) -> None:
        super().__init__(*args, escalation=escalation, **kwargs)
        cast(forms.ChoiceField, self.fields["option"]).choices = [
            (o["key"], o["label"]) for o in escalation.options
        ]
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
                    attrs={
                        "rows": rows,
                        "spellcheck": "false",
                        "wrap": "off",
                        "class": "code",
                        "data-json-object": f"args of “{option['label']}”",
                    }
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
        super().clean()
        data = self.cleaned_data
        key: str = data.get("option") or ""
        option = self.escalation.option(key) if key else None
        if option is None:  # no valid option chosen: its field says so
            return data
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
            value = read_json(raw)
        except BadJson as exc:
            self.add_error(field, f"{self.fields[field].label} {exc}.")
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
        if (name == "args" or name.startswith("args.")) and self.cleaned_data.get("option"):
            return args_field(self.cleaned_data["option"])
        return super().service_field(name)


class InstructionDecisionForm(DecisionForm):
    KIND = Decision.Kind.INSTRUCTION
    instruction = forms.CharField(
        max_length=TEXT_MAX_CHARS,
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
        max_length=TEXT_MAX_CHARS,
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


def decision_form(data, *, escalation: Escalation, user=None) -> DecisionForm | None:
    """The bound form for a posted decision, or None for an unknown kind."""
    form_class = DECISION_FORMS.get(data.get("kind", ""))
    return form_class(data, escalation=escalation, user=user) if form_class else None


def decision_forms(
    escalation: Escalation, bound: DecisionForm | None = None, user=None
) -> dict[str, DecisionForm]:
    """Every decision form by kind, for the panel: the bound one (with its errors) and fresh ones."""
    return {
        kind: bound
        if bound is not None and kind == bound.KIND
        else form_class(escalation=escalation, user=user)
        for kind, form_class in DECISION_FORMS.items()
    }


# ---------------------------------------------------------------- claims, comments, reviews


class ReassignForm(forms.Form):
    assignee = forms.ModelChoiceField(
        queryset=selectors.reviewers_assignable(),
        to_field_name="username",
        label="Assign to",
        empty_label="Pick a reviewer…",
        error_messages={
            "required": "Pick the reviewer to assign it to.",
            "invalid_choice": "That person is not a reviewer who can take it.",
        },
    )


class CommentForm(ServiceErrorsMixin, forms.Form):
    body = forms.CharField(
        max_length=TEXT_MAX_CHARS,
        strip=False,
        label="Comment for the team",
        help_text="Seen by reviewers in the timeline; never sent to the agent.",
        error_messages={"required": "Write something first."},
        widget=forms.Textarea(attrs={"rows": 2}),
    )


class QuestionForm(ServiceErrorsMixin, forms.Form):
    """A question to the agent (escalations.services.questions)."""

    text = forms.CharField(
        max_length=4000,
        label="Ask the agent",
        help_text="It leaves the queue until the agent answers (by webhook and its long-poll); "
        "the answer comes back on the timeline.",
        error_messages={"required": "Write the question first."},
        widget=forms.Textarea(attrs={"rows": 2}),
    )


class FlagReviewForm(ServiceErrorsMixin, forms.Form):
    """A look at a tier-2 escalation the policy decided: fine, or which option it should
    have been (any option but the one the policy chose)."""

    verdict = forms.ChoiceField(
        choices=FlagReview.Verdict.choices,
        widget=forms.RadioSelect,
        initial=FlagReview.Verdict.FINE,
        error_messages={"required": "Say whether the policy's choice was fine."},
    )
    option_key = forms.ChoiceField(required=False, label="It should have been")
    note = forms.CharField(
        required=False,
        max_length=TEXT_MAX_CHARS,
        label="Note (optional)",
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args, escalation: Escalation, decided_option: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["option_key"]).choices = [("", "Pick an option…")] + [
            (o["key"], o["label"]) for o in escalation.options if o["key"] != decided_option
        ]

    def clean(self):
        super().clean()
        data = self.cleaned_data
        if data.get("verdict") == FlagReview.Verdict.OTHER and not data.get("option_key"):
            self.add_error("option_key", "Pick the option it should have been.")
        return data


class RunCloseForm(ServiceErrorsMixin, forms.Form):
    note = forms.CharField(
        max_length=TEXT_MAX_CHARS,
        label="How did it end?",
        help_text="Kept with the run and shown on its escalation's timeline.",
        error_messages={"required": "Say how the run ended (a line is enough)."},
        widget=forms.Textarea(attrs={"rows": 2}),
    )
