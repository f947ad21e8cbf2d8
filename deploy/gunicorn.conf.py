"""gunicorn settings for web-http: pages and the agent API as plain HTTP (no long-polls).

Sync workers: Django's sync views served ~5x more requests/s under gunicorn than under an
ASGI server on the same box (see README, "Serving shape"). Long-polls (`?wait=N`) and
websockets never reach here: nginx sends them to web-async (uvicorn).

Every knob can be overridden from the environment: GUNICORN_BIND, GUNICORN_WORKERS,
GUNICORN_TIMEOUT, GUNICORN_MAX_REQUESTS. LOG_FORMAT=json makes gunicorn's own error and
access logs JSON lines too (handoff_site.logs), as Django's are.
"""

import multiprocessing
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from handoff_site import logs

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# (2 x cores) + 1 is gunicorn's own rule of thumb; at least 2.
workers = int(os.environ.get("GUNICORN_WORKERS", max(2, multiprocessing.cpu_count() * 2 + 1)))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 2
# Recycle workers now and then (with jitter, so they do not all restart at once).
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = max_requests // 10
# Heartbeat files in memory, not on the container's overlay filesystem.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - gunicorn's own advice
# Behind nginx on the compose network: trust its X-Forwarded-* headers.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
if logs.check_format(os.environ.get("LOG_FORMAT", "")) == "json":
    logconfig_dict = logs.gunicorn_config(level=loglevel.upper())
proc_name = "handoff-web-http"
