#!/usr/bin/env python3
"""Run Handoff's processes in the foreground for `make run`; Ctrl-C stops them all.

- Embedded mode (no REDIS_URL): one uvicorn process serves everything, and runs the Celery
  worker and beat in threads (handoff_site.embedded).
- With DATABASE_URL and REDIS_URL: web (uvicorn, serving pages, the API, websockets and
  long-polls), a Celery worker and Celery beat, as three child processes.

Each child runs in its own process group, so a Ctrl-C at the terminal reaches only this
runner, which then stops every child's whole group (Celery's pool processes included):
SIGTERM, a grace period, then SIGKILL. If one child dies, the others are stopped too and
the runner exits non-zero. On Linux each child also gets SIGTERM if the runner itself is
killed (PR_SET_PDEATHSIG), so nothing is left behind.

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


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the runner dies (Linux only)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Child:
    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.argv = argv
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
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
        assert self.proc is not None and self.proc.stdout is not None
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


def say(message: str) -> None:
    print(f"   run | {message}", flush=True)


def wait_until_serving(url: str, children: list[Child], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not all(child.alive() for child in children):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


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
            Child("worker", [py, "-m", "celery", "-A", "handoff_site", "worker", "-l", "INFO"]),
            Child("beat", [py, "-m", "celery", "-A", "handoff_site", "beat", "-l", "INFO"]),
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

    display_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    if ":" in display_host:
        display_host = f"[{display_host}]"
    url = f"http://{display_host}:{args.port}"

    def announce() -> None:
        if wait_until_serving(url + "/healthz", children) and not stopping.is_set():
            user, password = DEMO_LOGIN
            say("")
            say(f"Handoff is up: {url}/")
            say(f"Demo login: {user} / {password}")
            say(f"Agent API docs: {url}/api/v1/docs")
            say("Ctrl-C stops " + ("all three processes" if production else "it"))
            say("")

    threading.Thread(target=announce, daemon=True).start()

    exit_code = 0
    while not stopping.is_set():
        for child in children:
            if not child.alive():
                assert child.proc is not None
                say(f"{child.name} exited with code {child.proc.returncode}; stopping the rest")
                exit_code = child.proc.returncode or 1
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
