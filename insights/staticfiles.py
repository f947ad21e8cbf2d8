"""A staticfiles finder for the one file of the plotly package the page needs.

plotly (a pip dependency) ships plotly.js in its package data; this finder serves it as
`plotly/plotly.min.js`, so nothing is vendored, nothing comes from a CDN, and the
version always matches the installed package. Only that file is exposed.
"""

import importlib.util
import os

from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PLOTLY_JS = "plotly/plotly.min.js"


def _package_data() -> str:
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise RuntimeError("the plotly package is not installed (pip install plotly)")
    return os.path.join(os.path.dirname(spec.origin), "package_data")


class PlotlyFinder(BaseFinder):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.storage = FileSystemStorage(location=_package_data())
        self.storage.prefix = "plotly"  # type: ignore[attr-defined]  # as FileSystemFinder does

    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        if path != PLOTLY_JS:
            return []  # as Django's finders answer "not here"
        found = self.storage.path("plotly.min.js")
        return [found] if find_all else found

    def list(self, ignore_patterns):
        yield "plotly.min.js", self.storage
