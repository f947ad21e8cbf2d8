"""Keep Python's cyclic garbage collector off what a server process builds at start-up.

Django, the URLconf, ninja's schemas and every imported module are ~170,000 tracked objects
that live as long as the process. The collector's full (oldest generation) pass walks all of
them: ~75 ms with the process stopped, about once per 1,000 creates, ~0.08 ms a create on
average (bench/README.md, "The collector's full passes"). gc.freeze() moves them to a
permanent generation no pass visits; what a request allocates is collected as before.
Called once a process has loaded what it serves with: gunicorn's post_worker_init, Celery's
worker_process_init, the ASGI module once its URLconf is loaded.
"""

import gc


def freeze() -> None:
    gc.collect()  # what start-up left as garbage goes first, not into the permanent generation
    gc.freeze()
