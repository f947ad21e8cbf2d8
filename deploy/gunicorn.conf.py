"""gunicorn settings for web-http: pages and the agent API as plain HTTP (no long-polls).

Threaded workers: one process per core this server may use (or per core's worth of time a
cgroup CPU quota allows, where that is fewer), each serving GUNICORN_THREADS
(8) requests at once. On one core, a create costs 30-40% less CPU this way than under three
sync workers (bench/README.md, "Serving stacks"), with or without keep-alive: the threads of
one process share its warm caches and prepared statements, and one runs while another waits
on PostgreSQL. Keep the threads at most DB_POOL_MAX (10): each may hold a pooled connection.
Long-polls (`?wait=N`) and websockets never reach here: nginx sends them to web-async (uvicorn).

Every knob can be overridden from the environment: GUNICORN_BIND, GUNICORN_WORKERS,
GUNICORN_THREADS, GUNICORN_TIMEOUT, GUNICORN_MAX_REQUESTS, GUNICORN_CONTROL_SOCKET,
GUNICORN_PIN_WORKERS, GUNICORN_ACCESS_LOG.
LOG_FORMAT=json makes gunicorn's own error and access logs JSON lines too (handoff_site.logs),
as Django's are.
"""

import math
import os
import sys
from pathlib import Path

from gunicorn import glogging

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from handoff_site import logs

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")


def cpu_quota(root: str = "/sys/fs/cgroup") -> int | None:
    """The cores' worth of CPU time this container's cgroup allows, rounded up (Kubernetes CPU
    limits, `docker run --cpus`), or None without a quota. cgroup v2's cpu.max ("max 100000",
    "150000 100000"), else v1's cfs_quota_us (-1: none) and cfs_period_us."""
    try:
        quota, period = Path(root, "cpu.max").read_text().split()
    except (OSError, ValueError):
        try:
            quota = Path(root, "cpu", "cpu.cfs_quota_us").read_text().strip()
            period = Path(root, "cpu", "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    return max(1, math.ceil(int(quota) / int(period)))


# The cores this process may run on (taskset, cpusets); empty where the OS does not say. A quota
# is not a cpuset: with Kubernetes limits the affinity lists every core of the host.
CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def usable_cores(cores: list[int], quota: int | None) -> int:
    """How many cores this server may keep busy: those it may run on, or fewer where a quota
    allows less time than that."""
    return min(len(cores) or os.cpu_count() or 1, quota or sys.maxsize)


USABLE = usable_cores(CORES, cpu_quota())
# One process per core it may use (an empty GUNICORN_WORKERS is the default).
workers = int(os.environ.get("GUNICORN_WORKERS") or USABLE)
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS") or 8)
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
# A worker takes a connection only when one of its threads is free for it; the others wait in
# the kernel's listen queue, where whichever worker frees a thread first takes the next. With
# gthread's default (1,000) one worker took every connection it saw and queued them behind its
# own threads and GIL while the other worker idled: figure 1's p99 54 -> 36 ms (2.25 -> 1.48x
# the bare view), its req/s 65 -> 67 % (bench/README.md, "Two more serving stacks tried").
# No keep-alive then (a kept connection would hold a slot between requests): nginx opens a
# connection per request to web-http anyway, and buffers each request before it sends it, so
# a slow client never holds a thread here. Serve web-http behind it.
worker_connections = threads
keepalive = 0
# Recycle workers now and then (with jitter, so they do not all restart at once). Not often: a
# new worker costs ~1.5 s of CPU (Django's start-up, the URLconf, the pool's connections and
# their prepared statements), which at 5,000 requests a worker was ~0.3 ms per request, a
# quarter of an agent's read, and each restart showed in the p99 (bench/README.md).
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "100000"))
max_requests_jitter = max_requests // 10
# Heartbeat files in memory, not on the container's overlay filesystem.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - gunicorn's own advice
# Behind nginx on the compose network: trust its X-Forwarded-* headers.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")
# No access log of its own by default: nginx, the one front door, writes one line per request
# with the same request id (deploy/nginx.conf, log_format handoff), and writing it again here
# cost ~0.1 ms of a worker's CPU per request, 8 % of an agent's read (bench/README.md, "The
# access log, written once"). GUNICORN_ACCESS_LOG=1 writes it here too (JSON with LOG_FORMAT=json).
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "0") == "1" else None


class Logger(glogging.Logger):
    """gunicorn's logger, writing access lines only where `accesslog` says: gunicorn's own
    builds and writes them whenever a logging config is given (LOG_FORMAT=json's is)."""

    def access(self, resp, req, environ, request_time) -> None:
        if self.cfg.accesslog:
            super().access(resp, req, environ, request_time)


logger_class = Logger
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
if logs.check_format(os.environ.get("LOG_FORMAT", "")) == "json":
    logconfig_dict = logs.gunicorn_config(level=loglevel.upper())
proc_name = "handoff-web-http"
# gunicorn 25's control socket (gunicornc) defaults to one path per user, so every gunicorn on
# a box (tests, benchmarks, two checkouts) would take the same socket from the one before.
# Off unless GUNICORN_CONTROL_SOCKET names a path for this instance.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket


# Each threaded worker runs on one core of its own (GUNICORN_PIN_WORKERS=0: anywhere), where
# the server may use several. A request passes between a worker's threads four times (accept,
# serve, hand back, close), and each time the GIL goes to a thread the kernel may have put on
# the other core: pinned, the hand-offs stay on one core, as on a one-core box, where gthread
# is at its best. Two workers on two cores served GET 1,262-1,280 req/s at 1.22-1.24 ms of CPU
# each against 1,113 at 1.34 ms unpinned, and creates 438-462 against 396 req/s (bench/README.md,
# "Two more serving stacks tried"). The arbiter hands out the cores (pre_fork, one fork at a
# time): a new worker takes the core with the fewest live workers, so a replacement takes the
# one its predecessor left. Not under a quota smaller than the cores it may run on: those cores
# are shared with other containers, and a pinned worker could not move off a busy one.
def pinned(cores: list[int], usable: int) -> bool:
    """Whether each worker gets a core of its own: several cores, each the server's to use."""
    return len(cores) > 1 and usable == len(cores)


pin_workers = os.environ.get("GUNICORN_PIN_WORKERS", "1") != "0" and pinned(CORES, USABLE)


def pre_fork(server, worker) -> None:
    if not (pin_workers and server.cfg.worker_class_str == "gthread"):
        return
    taken = [getattr(live, "core", None) for live in server.WORKERS.values()]
    worker.core = min(CORES, key=lambda core: (taken.count(core), core))


def post_fork(server, worker) -> None:
    core = getattr(worker, "core", None)
    if core is not None:
        os.sched_setaffinity(0, {core})  # before the worker starts its threads: they inherit it


def post_worker_init(worker) -> None:
    """Before the worker's first request: the URLconf loaded and the start-up's objects kept
    off the garbage collector's full passes (handoff_site.heap.serving_ready)."""
    from handoff_site import heap

    heap.serving_ready()
