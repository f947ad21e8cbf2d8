"""Keep Python's cyclic garbage collector off what a server process builds at start-up.

Django, the URLconf, ninja's schemas and every imported module are ~170,000 tracked objects
that live as long as the process. The collector's full (oldest generation) pass walks all of
them: ~75 ms with the process stopped, about once per 1,000 creates, ~0.08 ms a create on
average (bench/README.md, "The collector's full passes"). gc.freeze() moves them to a
permanent generation no pass visits; what a request allocates is collected as before.
Called once a process has loaded what it serves with: gunicorn's post_worker_init and the
ASGI module (serving_ready: the URLconf first), Celery's worker_ready and worker_process_init.
"""

import gc


def freeze() -> None:
    gc.collect()  # what start-up left as garbage goes first, not into the permanent generation
    gc.freeze()


def serving_ready() -> None:
    """A web server's process, before its first request: the URLconf (and with it every view
    and the API's schemas) loaded now, not on the first request (which then took ~0.4 s of
    CPU more), then all of it frozen."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - resolving the property loads the module
    freeze()
