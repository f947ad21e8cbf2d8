"""Every server process keeps the collector's full passes off what it loaded at start-up
(handoff_site.heap): gunicorn's workers, Celery's worker and its children, the ASGI module."""

import gc
import importlib.util
from pathlib import Path

import pytest
from celery.signals import worker_process_init, worker_ready

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process's objects back under the collector


def _gunicorn_config():
    spec = importlib.util.spec_from_file_location("gunicorn_conf", ROOT / "deploy" / "gunicorn.conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_gunicorn_worker_freezes_once_it_has_loaded_the_urlconf():
    _gunicorn_config().post_worker_init(worker=None)
    assert gc.get_freeze_count() > 10_000


@pytest.mark.parametrize("signal", [worker_ready, worker_process_init], ids=["worker", "child"])
def test_a_celery_worker_and_each_child_freeze_as_they_start(signal):
    signal.send(sender=None)
    assert gc.get_freeze_count() > 10_000


def test_what_a_request_allocates_is_still_collected():
    gc.collect()
    gc.freeze()

    class Cycle:
        pass

    a, b = Cycle(), Cycle()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2
