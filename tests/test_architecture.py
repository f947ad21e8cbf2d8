"""The house rules that keep the code easy to change, checked on the source."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def python_files(package: str) -> list[Path]:
    return [p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", python_files("escalations"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_domain_never_imports_the_people_side(path):
    assert not {m for m in imported_modules(path) if m == "reviews" or m.startswith("reviews.")}


def enqueue_calls_outside_on_commit(path: Path) -> list[str]:
    """`.delay(` / `.apply_async(` in a service run before commit unless deferred: allowed only
    inside helpers named `_enqueue*` (which services hand to transaction.on_commit) and in
    `delay_on_commit`."""
    tree = ast.parse(path.read_text())
    offending = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            if (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and child.func.attr in ("delay", "apply_async")
                and not function.startswith("_enqueue")
            ):
                offending.append(f"{path.name}:{child.lineno} in {function}")
            visit(child, name)

    visit(tree, "<module>")
    return offending


WRITERS = [*python_files("escalations/services"), ROOT / "reviews" / "services.py", ROOT / "reviews" / "views.py"]


@pytest.mark.parametrize("path", WRITERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_writes_enqueue_tasks_only_after_commit(path):
    assert enqueue_calls_outside_on_commit(path) == []


def test_views_do_not_write_to_the_database_directly():
    source = (ROOT / "reviews" / "views.py").read_text()
    for forbidden in (".save(", ".objects.create(", ".update(", ".delete("):
        assert forbidden not in source, f"reviews/views.py calls {forbidden}: use a service"


def test_policy_is_pure():
    modules = imported_modules(ROOT / "escalations" / "policy.py")
    assert not {m for m in modules if m.startswith(("django", "escalations", "reviews", "celery", "redis"))}
