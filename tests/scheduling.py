"""How `make test` shares the files out among pytest-xdist's processes (tests/conftest.py).

As `--dist loadfile`: a file's tests run in one process, in order, with its module fixtures
set up once. Two changes, both only about order and grouping, never about what runs:

- The longest files start first (LONGEST_FIRST, measured: `--durations` or a junit report),
  so no process is left with a four-minute file when the others have finished. Every other
  file follows in the usual order.
- The accessibility matrix, the longest file by far (every page in both themes at both
  widths), is one unit per width: its desktop and phone halves run in two processes, each
  with its own demo site.
"""

import pytest
from xdist.scheduler import LoadFileScheduling

# Longest first, from a run of the whole suite on two cores (seconds, summed over the file).
LONGEST_FIRST = (
    "tests/test_accessibility_browser.py",  # 439 (two units)
    "tests/test_schemathesis.py",  # 191
    "tests/test_faults.py",  # 181
    "tests/test_request_bodies.py",  # 174
    "tests/test_insights.py",  # 152
    "tests/test_celery_worker.py",  # 134
    "tests/test_queue.py",  # 105
    "tests/test_notifications.py",  # 92
    "tests/test_fault_postgres.py",  # 87
    "tests/test_two_person.py",  # 87
)
SPLIT_BY_LAST_PARAMETER = {"tests/test_accessibility_browser.py"}


def unit(nodeid: str) -> str:
    """The work unit of a test: its file, or its file and last parameter (the width)."""
    path = nodeid.split("::", 1)[0]
    if path in SPLIT_BY_LAST_PARAMETER and nodeid.endswith("]"):
        return f"{path}::{nodeid[:-1].rsplit('-', 1)[-1]}"
    return path


def longest_first(items: list[pytest.Item]) -> None:
    """Reorder the collection in place: LONGEST_FIRST's files, then the rest as collected."""
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


class LongestFilesFirst(LoadFileScheduling):
    """--dist loadfile over `unit`s, handed out in the collection's order (longest_first)."""

    def __init__(self, config: pytest.Config, log=None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False  # not by number of tests: by the order above

    def _split_scope(self, nodeid: str) -> str:
        return unit(nodeid)
