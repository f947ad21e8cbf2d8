"""The house rules that keep the code easy to change, checked on the source.

The project's parts and what each may import (the architecture, declared once): a module
may import from its own part and from the parts listed for it, nothing else of the
project. Every Python module of every part is checked (migrations aside); a module that
belongs to no declared part fails the test rather than escaping it.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Leaf modules anything may use: they import nothing of the project themselves but other leaves.
LEAVES = {"operations.metrics", "operations.egress", "operations.redis_clients", "people.roles"}

# part -> the parts it may import (its own part always). `escalations` is the domain.
PARTS: dict[str, set[str]] = {
    "people": set(),  # accounts, roles, members (imports only Django)
    "escalations": set(),  # the domain: only the leaves (metrics, egress)
    "notifications": {"escalations"},
    "insights": {"escalations"},
    # reviews uses people's services (reviewer_token --machine makes a machine account).
    "reviews": {"people", "escalations", "notifications", "insights"},
    "operations": {"escalations", "notifications", "insights"},
    "demo": {"people", "escalations", "insights", "reviews"},
    "handoff_site": {"people", "escalations", "notifications", "insights", "reviews", "operations", "demo"},
}
PROJECT = set(PARTS) | {"tests", "bench", "scripts", "clients"}
CLIENT = ROOT / "clients" / "python" / "src"


def python_files(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "migrations" not in p.parts)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, relative imports resolved, at any depth (a function's
    own `from x import y` counts as much as the top of the file)."""
    tree = ast.parse(path.read_text())
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def project_imports(path: Path) -> set[str]:
    return {m for m in imported_modules(path) if m.split(".")[0] in PROJECT}


def part_of(module: str) -> str:
    return module.split(".")[0]


def in_a_leaf(module: str) -> bool:
    return any(module == leaf or module.startswith(leaf + ".") for leaf in LEAVES)


def allowed(importer: str, imported: str) -> bool:
    own = part_of(importer)
    if part_of(imported) == own or in_a_leaf(imported):
        return True
    return part_of(imported) in PARTS[own]


APP_FILES = [p for part in PARTS for p in python_files(part)]


def test_every_module_belongs_to_a_declared_part():
    top = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name != "tests"}
    assert top <= PROJECT, f"undeclared packages: {sorted(top - PROJECT)}"
    assert len(APP_FILES) > 100  # the walk found the code


@pytest.mark.parametrize("path", APP_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_part_imports_only_what_it_may(path):
    importer = module_name(path)
    wrong = sorted(m for m in project_imports(path) if not allowed(importer, m))
    assert wrong == [], f"{importer} ({part_of(importer)}) may not import {wrong}"


def test_the_leaves_import_nothing_of_the_project_but_leaves():
    for leaf in LEAVES:
        imported = project_imports(ROOT / f"{leaf.replace('.', '/')}.py")
        assert all(in_a_leaf(m) for m in imported), (leaf, imported)


@pytest.mark.parametrize("path", sorted(CLIENT.rglob("*.py")), ids=lambda p: p.name)
def test_the_client_imports_nothing_of_the_server(path):
    server = set(PARTS) | {"tests"}
    assert not {m for m in imported_modules(path) if m.split(".")[0] in server}


def enqueue_calls_outside_on_commit(path: Path) -> list[str]:
    """`.delay(` / `.apply_async(` run before commit unless deferred: allowed only inside
    helpers named `_enqueue*` (which writers hand to transaction.on_commit), in
    `delay_on_commit`, and in tasks.py (a task enqueuing the next, after its own commit)."""
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


# Tasks (a task enqueuing the next, after its own commit) and management commands run
# outside a request's transaction: they are the ones allowed to enqueue at once.
WRITING_MODULES = [
    p for p in APP_FILES if p.name != "tasks.py" and p.parts[-3:-1] != ("management", "commands")
]


@pytest.mark.parametrize("path", WRITING_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_tasks_are_enqueued_only_after_commit(path):
    assert enqueue_calls_outside_on_commit(path) == []


ORM_WRITES = {"save", "delete", "create", "bulk_create", "bulk_update", "get_or_create", "update_or_create", "update"}
QUERYSET = ("objects", ".filter(", ".exclude(", ".all(", "select_for_update(", "_set")


def orm_writes(path: Path) -> list[str]:
    """Calls that write through the ORM: `.save()`/`.delete()` on anything, and the
    manager/queryset writes on anything that reads as a manager or a queryset."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ORM_WRITES:
            receiver = ast.unparse(node.func.value)
            if node.func.attr in ("save", "delete") or any(mark in receiver for mark in QUERYSET):
                found.append(f"{path.name}:{node.lineno} {receiver}.{node.func.attr}()")
    return found


VIEWS = [p for p in APP_FILES if p.stem in ("views", "api", "consumers") or p.stem.startswith(("views_", "queue_views"))]


@pytest.mark.parametrize("path", VIEWS, ids=lambda p: str(p.relative_to(ROOT)))
def test_views_do_not_write_through_the_orm(path):
    assert orm_writes(path) == [], "a view calls a service for every write"


def test_the_view_rule_sees_a_write(tmp_path):
    probe = tmp_path / "views.py"
    probe.write_text("def v(request):\n    Thing.objects.filter(pk=1).update(x=2)\n    row.save()\n    ctx.update(a=1)\n")
    assert len(orm_writes(probe)) == 2


def test_policy_is_pure():
    modules = imported_modules(ROOT / "escalations" / "policy.py")
    assert not {m for m in modules if m.startswith(("django", "escalations", "reviews", "celery", "redis"))}


MAX_MODULE_LINES = 500


@pytest.mark.parametrize("path", APP_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_application_module_is_over_500_lines(path):
    """A module that grows past this holds more than one thing: split it by what it holds
    (as escalations/services/ and escalations/models/ are). Migrations and data aside."""
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES
