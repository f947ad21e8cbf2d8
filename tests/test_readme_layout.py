"""The README's "Where things are" names real files: a rename that forgets it fails here."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_file_the_readme_walks_through_exists():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Where things are") : readme.index("## Tests and CI")]
    paths = set(re.findall(r"`([a-z_]+/[\w/]+\.py)", section))
    assert len(paths) >= 15
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert missing == []
