"""Services refuse with the domain's own errors (escalations.errors); each caller maps them
in one place: the API to problem+json (problems.from_domain), the dashboard to form errors
and notices (reviews.refusals)."""

import ast
from pathlib import Path

import pytest

from escalations.errors import (
    AlreadyDecided,
    ClaimedByOther,
    ClaimLost,
    Conflict,
    DomainError,
    FieldError,
    Forbidden,
    Invalid,
    NotFound,
)
from escalations.problems import from_domain

ROOT = Path(__file__).resolve().parent.parent

SERVICE_MODULES = [
    *sorted((ROOT / "escalations" / "services").glob("*.py")),
    *(ROOT / part / "services.py" for part in ("reviews", "notifications", "insights", "people")),
    ROOT / "escalations" / "errors.py",
    ROOT / "escalations" / "jsontext.py",
]


def absolute_imports(path: Path) -> set[str]:
    """Every module the file imports, relative imports resolved against its package."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", SERVICE_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_service_module_imports_the_http_problems(path):
    imported = absolute_imports(path)
    assert not {m for m in imported if m == "escalations.problems" or m.startswith("escalations.problems.")}
    assert "Problem(" not in path.read_text()


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (Invalid([FieldError("name", "is taken")]), 422),
        (NotFound("No escalation 1."), 404),
        (Conflict("Already closed.", type="already-closed"), 409),
        (Forbidden("Not yours."), 403),
        (DomainError("Refused."), 400),
    ],
)
def test_the_api_answers_each_kind_of_refusal_with_its_status(error, status):
    problem = from_domain(error)
    assert problem.status == status
    assert problem.detail == error.detail


def test_an_invalid_input_names_its_fields_and_keeps_its_type():
    problem = from_domain(
        Invalid([FieldError("a", "x"), FieldError("b", "y")], type="incomplete-package", title="T")
    )
    assert problem.body() == {
        "type": "https://handoff.dev/problems/incomplete-package",
        "title": "T",
        "status": 422,
        "detail": "2 fields need attention",
        "errors": [{"field": "a", "message": "x"}, {"field": "b", "message": "y"}],
    }


def test_a_conflict_carries_its_extra_members():
    problem = from_domain(Conflict("Taken.", extra={"open_escalation": {"id": "e"}}))
    assert problem.body()["open_escalation"] == {"id": "e"}


def test_the_claim_and_decision_refusals_are_conflicts():
    assert issubclass(AlreadyDecided, Conflict)
    assert issubclass(ClaimedByOther, Conflict)
    assert issubclass(ClaimLost, Conflict)
