"""How the dashboard shows a service's refusal (escalations.errors), in one place: an
Invalid's field errors next to the fields they name, any other refusal as a notice (above
the form, or on the page)."""

from escalations.errors import DomainError, FieldError, Invalid


def field_errors(refusal: DomainError) -> list[FieldError]:
    """The fields a refusal names (only Invalid names any)."""
    return list(refusal.errors) if isinstance(refusal, Invalid) else []


def notice(refusal: DomainError) -> str:
    """What a person reads when a write was refused as a whole."""
    return refusal.detail


class ShowsRefusals:
    """A form (or formset) that shows a service's refusal: `add_refusal` places each field
    error with `add_field_error`, a refusal naming no field with `add_form_error`."""

    def add_refusal(self, refusal: DomainError) -> None:
        errors = field_errors(refusal)
        for error in errors:
            self.add_field_error(error)
        if not errors:
            self.add_form_error(notice(refusal))

    def add_field_error(self, error: FieldError) -> None:
        raise NotImplementedError

    def add_form_error(self, message: str) -> None:
        raise NotImplementedError
