#!/usr/bin/env python3
"""Run Handoff's processes in the foreground for `make run`; Ctrl-C stops them all.

- Embedded mode (no REDIS_URL): one uvicorn process serves everything, and runs the Celery
  worker and beat in threads (handoff_site.embedded).
- With DATABASE_URL and REDIS_URL: web (uvicorn, serving pages, the API, websockets and
  long-polls), a Celery worker and Celery beat, as three child processes.

Each child runs in its own process group, so a Ctrl-C at the terminal reaches only this
runner, which then stops every child's whole group (Celery's pool processes included):
SIGTERM, a grace period, then SIGKILL. A worker or beat that exits is restarted, and the
runner says so: after 1 s, then 2, 4, ... up to 30 s while it keeps crashing (the count
starts over once it has stayed up a minute), so a crash loop does not spin. If web exits,
the others are stopped too and the runner exits non-zero. On Linux each child also gets
SIGTERM if the runner itself is killed (PR_SET_PDEATHSIG), so nothing is left behind.

Usage: python scripts/run.py [--host H] [--port P] [--grace SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_LOGIN = ("demo", "handoff-demo")  # created by `manage.py seed_demo`
RESTART_FIRST_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
STABLE_SECONDS = 60.0  # a child up this long before it exits starts its backoff over


def restart_delay(crashes: int) -> float:
    """Seconds before restarting a child that exited `crashes` times in a row (1, 2, ...)."""
    return min(RESTART_MAX_SECONDS, RESTART_FIRST_SECONDS * 2 ** max(0, crashes - 1))


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the runner dies (Linux only)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Child:
    def __init__(self, name: str, argv: list[str], *, restart: bool = False) -> None:
        self.name = name
        self.argv = argv
        self.restart = restart  # restarted when it exits (else the runner stops)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.crashes = 0  # exits in a row, each within STABLE_SECONDS of its start
        self.restart_at: float | None = None  # when a pending restart is due

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.restart_at = None
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: Ctrl-C goes to the runner only
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        threading.Thread(target=self._pump, daemon=True, name=f"pump-{self.name}").start()

    def _pump(self) -> None:
        """Copy the child's output to ours, each line prefixed with the child's name."""
        assert self.proc is not None
        assert self.proc.stdout is not None
        prefix = f"{self.name:>6} | ".encode()
        out = sys.stdout.buffer
        for line in iter(self.proc.stdout.readline, b""):
            out.write(prefix + line)
            out.flush()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def schedule_restart(self) -> float:
        """After it exited: end what is left of its group (a dead worker's pool processes),
        and set when to start it again. Returns the delay."""
        self.signal_group(signal.SIGKILL)
        ran_for = time.monotonic() - self.started_at
        self.crashes = 1 if ran_for >= STABLE_SECONDS else self.crashes + 1
        delay = restart_delay(self.crashes)
        self.restart_at = time.monotonic() + delay
        return delay


def say(message: str) -> None:
    print(f"   run | {message}", flush=True)


def wait_until_serving(url: str, children: list[Child], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not all(child.alive() for child in children):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own http URL
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def supervise(children: list[Child]) -> int:
    """One look at the children: restart a worker or beat that exited (after its backoff);
    a web that exited ends the run. Returns the exit code to stop with, or 0 to go on."""
    for child in children:
        assert child.proc is not None
        if child.restart_at is not None:
            if time.monotonic() >= child.restart_at:
                child.start()
                say(f"{child.name} restarted (pid {child.proc.pid})")
            continue
        if child.alive():
            continue
        code = child.proc.returncode
        if not child.restart:
            say(f"{child.name} exited with code {code}; stopping the rest")
            return code or 1
        delay = child.schedule_restart()
        say(
            f"{child.name} exited with code {code}; restarting it in {delay:g} s "
            f"({child.crashes} exit{'s' if child.crashes > 1 else ''} in a row)"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument(
        "--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL"
    )
    args = parser.parse_args()

    py = sys.executable
    web = Child(
        "web",
        [
            py, "-m", "uvicorn", "handoff_site.asgi:application",
            "--host", args.host, "--port", str(args.port),
            "--timeout-graceful-shutdown", "5", "--no-server-header", "--lifespan", "off",
        ],
    )  # fmt: skip
    children = [web]
    production = bool(os.environ.get("REDIS_URL"))
    if production:
        if not os.environ.get("DATABASE_URL"):
            say("warning: REDIS_URL is set but DATABASE_URL is not: using SQLite with Redis")
        children += [
            Child(
                "worker",
                [py, "-m", "celery", "-A", "handoff_site", "worker", "-l", "INFO"],
                restart=True,
            ),
            Child(
                "beat",
                [py, "-m", "celery", "-A", "handoff_site", "beat", "-l", "INFO"],
                restart=True,
            ),
        ]

    stopping = threading.Event()

    def on_signal(signum: int, _frame) -> None:
        if stopping.is_set():  # a second Ctrl-C: no more grace
            say("stopping now")
            for child in children:
                child.signal_group(signal.SIGKILL)
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    shape = (
        "web + worker + beat on PostgreSQL and Redis"
        if production
        else "embedded: one process, SQLite, in-process Celery"
    )
    say(f"starting {shape}")
    for child in children:
        child.start()

    display_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host  # noqa: S104
    if ":" in display_host:
        display_host = f"[{display_host}]"
    url = f"http://{display_host}:{args.port}"

    def announce() -> None:
        if wait_until_serving(url + "/healthz", [web]) and not stopping.is_set():
            user, password = DEMO_LOGIN
            say("")
            say(f"Handoff is up: {url}/")
            say(f"Demo login: {user} / {password}")
            say(f"Agent API docs: {url}/api/v1/docs")
            say("Ctrl-C stops " + ("all three processes" if production else "it"))
            if production:
                say("a worker or beat that exits is restarted")
            say("")

    threading.Thread(target=announce, daemon=True).start()

    exit_code = 0
    while not stopping.is_set():
        exit_code = supervise(children)
        if exit_code:
            stopping.set()
            break
        stopping.wait(0.2)

    say("stopping " + ", ".join(child.name for child in children if child.alive()))
    for child in children:
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + args.grace
    for child in children:
        assert child.proc is not None
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{child.name} did not stop in {args.grace:.0f} s: killing it")
        child.signal_group(signal.SIGKILL)  # whatever is left in its group (pool processes)
        child.proc.wait()
    say("stopped")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
