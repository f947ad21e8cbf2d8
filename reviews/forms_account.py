"""The account page's form: naming a new reviewer token."""

from django import forms

from .services import TOKEN_LABEL_MAX


class TokenCreateForm(forms.Form):
    label = forms.CharField(
        label="Name",
        max_length=TOKEN_LABEL_MAX,
        help_text="Where it is used, e.g. “triage script on ci-runner-3”.",
    )

    def clean_label(self) -> str:
        label = self.cleaned_data["label"].strip()
        if not label:
            raise forms.ValidationError("Give the token a name.")
        return label
