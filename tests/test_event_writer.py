"""Only the timeline writer (escalations.services.timeline.record) creates Event rows.

Every Python module of the project is read (tests and the clients aside), with no silent
skips: the exceptions are named below, each with its reason."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIPPED_DIRS = {".venv", ".venv-client", "node_modules", "tests", "clients", "migrations", ".git"}

THE_WRITER = "escalations/services/timeline.py"
EXCEPTIONS = {
    # The demo's years of history are written in bulk, as the services would have written them
    # (tests/test_demo.py holds them to the same invariants as rows written through services).
    "demo/history.py": "bulk history for the demo",
    # The bench fills its database with rows to measure against, not through the services.
    "bench/fixtures.py": "bench fixtures",
}
CREATING = {"create", "bulk_create", "get_or_create", "update_or_create"}


def modules() -> list[Path]:
    return sorted(
        path
        for path in ROOT.rglob("*.py")
        if not SKIPPED_DIRS & set(path.relative_to(ROOT).parts)
    )


def event_writes(path: Path) -> list[str]:
    """`Event(...)` and `Event.objects.<create>(...)` where Event is the domain's model."""
    tree = ast.parse(path.read_text())
    imports_event = any(
        isinstance(node, ast.ImportFrom)
        and (node.module or "").endswith("models")
        and any(alias.name == "Event" for alias in node.names)
        for node in ast.walk(tree)
    )
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if imports_event and isinstance(func, ast.Name) and func.id == "Event":
            found.append(f"{path.name}:{node.lineno} Event(...)")
        elif (
            isinstance(func, ast.Attribute)
            and func.attr in CREATING
            and isinstance(func.value, ast.Attribute)
            and func.value.attr == "objects"
            and isinstance(func.value.value, ast.Name | ast.Attribute)
            and (getattr(func.value.value, "id", None) or getattr(func.value.value, "attr", None)) == "Event"
        ):
            found.append(f"{path.name}:{node.lineno} Event.objects.{func.attr}(...)")
    return found


def test_the_scan_sees_the_writer_and_the_exceptions():
    paths = {str(p.relative_to(ROOT)) for p in modules()}
    assert {THE_WRITER, *EXCEPTIONS} <= paths
    assert event_writes(ROOT / THE_WRITER)
    for exception in EXCEPTIONS:
        assert event_writes(ROOT / exception), f"{exception} writes no Event any more: drop the exception"


@pytest.mark.parametrize(
    "path",
    [p for p in modules() if str(p.relative_to(ROOT)) not in {THE_WRITER, *EXCEPTIONS}],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_only_the_timeline_creates_event_rows(path):
    assert event_writes(path) == [], "write Event rows through escalations.services.timeline.record"
