"""Helpers for every bench script: the project's venv, processes in their own groups, ports,
wrk, percentiles, /proc, py-spy profiles.

Nothing here imports Django: each script sets the environment up first.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
LOGS = RESULTS / "logs"


def use_the_project_venv() -> None:
    """`python bench/x.py` from any interpreter: run again under the project's venv (Django
    and the app's dependencies are there), unless this is it already."""
    venv_python = ROOT / ".venv" / "bin" / "python"
    try:
        import django  # noqa: F401
    except ImportError:
        if venv_python.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
            os.execv(str(venv_python), [str(venv_python), *sys.argv])
        raise


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_for(done, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    """Until done() is true; a RuntimeError when `proc` exits first or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while not done():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode} (see {LOGS})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not done after {timeout:.0f} s")
        time.sleep(0.05)


# ---------------------------------------------------------------- processes


class Processes:
    """Every child runs in its own session (process group); stop() kills the whole group."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(
        self,
        name: str,
        cmd: list[str],
        *,
        env: dict[str, str],
        cwd: Path = ROOT,
        stdout=None,
        stdin=None,
    ) -> subprocess.Popen:
        LOGS.mkdir(parents=True, exist_ok=True)
        log_file = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115 - kept open by the child
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=stdout if stdout is not None else log_file,
            stderr=log_file,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            start_new_session=True,
        )
        log_file.close()
        self.children.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 10.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        # Leftover members of the group (gunicorn/celery children) get SIGKILL.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        self.children = [(n, p) for n, p in self.children if p is not proc]

    def stop_all(self) -> None:
        for _, proc in list(reversed(self.children)):
            self.stop(proc, timeout=5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r:.80} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def http_get(port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 10.0):
    """(status, body bytes) of one plain GET on 127.0.0.1."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# ---------------------------------------------------------------- wrk


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    log("wrk is missing: apt-get install -y wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, check=True, capture_output=True, timeout=600)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk could not be installed")
    return found


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: dict[str, int] = field(default_factory=dict)
    raw: str = ""
    server_cpu_ms: float | None = None  # the server's CPU per request, when the caller measures it

    @property
    def errors(self) -> int:
        return self.non2xx + sum(self.socket_errors.values())

    @property
    def ok(self) -> int:
        return self.requests - self.non2xx

    def as_dict(self) -> dict:
        return {**self.__dict__, "errors": self.errors, "ok": self.ok}


def run_wrk(
    url: str, *, threads: int, connections: int, seconds: int, script: Path | None = None,
    name: str = "wrk",
) -> WrkResult:
    cmd = [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    out = result.stdout
    (LOGS / f"{name}.txt").write_text(" ".join(cmd) + "\n" + out + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr[-500:]}")
    dist = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if not (total and rps and dist):
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    socket_errors = {}
    if sock:
        socket_errors = dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True))
    return WrkResult(
        requests=int(total.group(1)),
        seconds=_ms(total.group(2) + total.group(3)) / 1000.0,
        rps=float(rps.group(1)),
        p50_ms=_ms(dist["50"]),
        p75_ms=_ms(dist["75"]),
        p90_ms=_ms(dist["90"]),
        p99_ms=_ms(dist["99"]),
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=socket_errors,
        raw=out,
    )


def lua_string(text: str) -> str:
    """A Lua long-bracket literal that cannot be closed by `text`."""
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


# ---------------------------------------------------------------- statistics


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000.0 for v in values_s]
    return {
        "n": len(ms),
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": max(ms) if ms else float("nan"),
        "min": min(ms) if ms else float("nan"),
    }


# ---------------------------------------------------------------- /proc


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB (MiB)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            values[key] = int(value.split()[0]) / 1024.0
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) of one process group: its live processes, and the children
    they have reaped (a gunicorn worker recycled after max_requests, a Celery child replaced:
    their time moves to the parent's cutime + cstime when it waits for them)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / os.sysconf("SC_CLK_TCK")


def tcp_local_ports_to(pid: int, remote_port: int) -> set[int]:
    """Local ports of the TCP connections that process `pid` holds to `remote_port`."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, remote, inode = parts[1], parts[2], parts[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def read_line(proc: subprocess.Popen, timeout: float, what: str) -> str:
    """One line of a child's stdout (a pipe), or RuntimeError after `timeout` s."""
    import select

    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"{what}: nothing said in {timeout:.0f} s")
        stdout = proc.stdout
        if stdout is None:
            raise RuntimeError(f"{what}: its output is not piped to the bench")
        ready, _, _ = select.select([stdout], [], [], min(left, 1.0))
        if ready:
            line = stdout.readline()
            if not line:
                raise RuntimeError(f"{what}: exited ({proc.poll()}); see {LOGS}")
            return line.decode().strip()
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: exited with {proc.returncode}; see {LOGS}")


def wait_until_idle(pid: int, *, below: float = 0.05, window: float = 0.5, timeout: float = 20.0) -> float:
    """Wait until a process uses less than `below` of one core over `window` s; returns waited s."""
    started = time.monotonic()
    last = cpu_seconds(pid)
    while time.monotonic() - started < timeout:
        time.sleep(window)
        now = cpu_seconds(pid)
        if (now - last) / window < below:
            return time.monotonic() - started
        last = now
    return time.monotonic() - started


def dump_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))


def python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


# ---------------------------------------------------------------- profiling (--profile)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def py_spy() -> str | None:
    venv = ROOT / ".venv" / "bin" / "py-spy"
    if venv.exists():
        return str(venv)
    return shutil.which("py-spy")


def ensure_py_spy() -> str:
    found = py_spy()
    if found:
        return found
    log("installing py-spy into the venv (for --profile)")
    subprocess.run([python(), "-m", "pip", "install", "-q", "py-spy"], check=True, timeout=600)
    found = py_spy()
    if not found:
        raise RuntimeError("py-spy could not be installed")
    return found


def start_profile(procs: Processes, pid: int, name: str, seconds: float) -> subprocess.Popen:
    """py-spy record (collapsed stacks) of `pid` and its children for `seconds`."""
    out = RESULTS / f"profile-{name}.txt"
    out.unlink(missing_ok=True)
    cmd = [
        ensure_py_spy(), "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
        "--rate", "250", "--duration", str(int(seconds)), "--format", "raw", "--output", str(out),
    ]
    return procs.start(f"py-spy-{name}", cmd, env=dict(os.environ))


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({path})"


def summarize_profile(name: str, top: int = 28) -> str:
    """Inclusive and self shares of the samples, per function, from a py-spy raw profile."""
    path = RESULTS / f"profile-{name}.txt"
    if not path.exists() or not path.stat().st_size:
        return f"(no profile for {name})"
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short(f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n
    if not total:
        return f"(empty profile for {name})"
    plumbing = ("process ", "<frozen", "gunicorn/", "click/", "billiard/", "celery/bin", "celery/__main__",
                "celery/bootsteps", "celery/concurrency", "celery/worker/worker.py", "uvicorn/main.py",
                "uvicorn/server.py", "uvicorn/__main__", "asyncio/runners.py", "Thread.", "_worker (",
                "_WorkItem.run", "<module> (", "asyncio/base_events.py", "asyncio/events.py")
    inclusive = {k: v for k, v in inclusive.items() if not any(p in k for p in plumbing)}
    lines = [f"profile {name}: {total} samples (py-spy, all processes of the server, idle excluded)",
             "  inclusive  function"]
    for frame, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100.0 * n / total:6.1f}%   {frame}")
    lines.append("  self       function")
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:12]:
        lines.append(f"  {100.0 * n / total:6.1f}%   {frame}")
    text = "\n".join(lines)
    (RESULTS / f"profile-{name}.summary.txt").write_text(text + "\n")
    return text
