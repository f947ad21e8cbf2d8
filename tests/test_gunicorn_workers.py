"""web-http's gunicorn (deploy/gunicorn.conf.py) puts each threaded worker on a core of its
own where it may use several, and a replacement on the core its predecessor left; with
GUNICORN_PIN_WORKERS=0 the workers run anywhere. It writes no access log unless
GUNICORN_ACCESS_LOG=1 (the proxy writes it), in JSON mode too."""

import itertools
import json
import os
import runpy
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
CORES = sorted(os.sched_getaffinity(0))

several_cores = pytest.mark.skipif(len(CORES) < 2, reason="one core: there is nothing to pin")


def workers_of(master: int) -> dict[int, set[int]]:
    """The master's children and the cores each may run on."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                found[int(entry)] = os.sched_getaffinity(int(entry))
        except (OSError, ValueError):
            continue  # gone meanwhile
    return found


def settled(master: int, count: int, done, timeout: float = 30) -> dict[int, set[int]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = workers_of(master)
        if len(workers) == count and done(workers):
            return workers
        time.sleep(0.05)
    raise AssertionError(f"workers never settled: {workers_of(master)}")


def start(tmp_path: Path, **env: str) -> subprocess.Popen:
    """gunicorn with deploy/gunicorn.conf.py (2 workers unless `env` says), its output in
    tmp_path/gunicorn.log."""
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "handoff_site.wsgi:application"],
        cwd=ROOT,
        env={**os.environ, "GUNICORN_BIND": "127.0.0.1:0", "GUNICORN_WORKERS": "2",
             "GUNICORN_LOG_LEVEL": "warning", "DEBUG": "1", **env},
        stdout=(tmp_path / "gunicorn.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def stop(master: subprocess.Popen) -> None:
    master.terminate()
    master.wait(timeout=30)


@several_cores
def test_each_worker_has_a_core_of_its_own_and_a_replacement_takes_the_one_left(tmp_path):
    master = start(tmp_path)
    try:
        workers = settled(master.pid, 2, lambda w: all(len(cores) == 1 for cores in w.values()))
        assert sorted(next(iter(cores)) for cores in workers.values()) == CORES[:2]

        killed = next(iter(workers))
        os.kill(killed, signal.SIGKILL)
        now = settled(master.pid, 2, lambda w: killed not in w and all(len(c) == 1 for c in w.values()))

        assert sorted(next(iter(cores)) for cores in now.values()) == CORES[:2]
        (replacement,) = set(now) - set(workers)
        assert now[replacement] == workers[killed]
    finally:
        stop(master)


@several_cores
def test_not_pinned_when_told(tmp_path):
    master = start(tmp_path, GUNICORN_PIN_WORKERS="0")
    try:
        time.sleep(1)  # past the moment a worker would have been pinned
        workers = settled(master.pid, 2, lambda w: True)
        assert all(cores == set(CORES) for cores in workers.values())
    finally:
        stop(master)


@pytest.mark.parametrize("log_format", ["plain", "json"])
@pytest.mark.parametrize("access_log", ["", "1"])
def test_the_access_log_is_written_only_when_asked(tmp_path, log_format, access_log):
    port = free_port()
    out = tmp_path / "gunicorn.log"
    master = start(tmp_path, GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="1",
                   LOG_FORMAT=log_format, GUNICORN_ACCESS_LOG=access_log)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        for probe in itertools.count():
            # Each try asks a path of its own: a try the client gave up on may still be served and logged.
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz?probe={probe}", timeout=2) as answer:
                    assert answer.status == 200
                break
            except OSError:
                assert time.monotonic() < deadline, out.read_text()
                time.sleep(0.1)
    finally:
        stop(master)
    logged = out.read_text().splitlines()
    if access_log != "1":
        assert [line for line in logged if "/healthz?probe=" in line] == []
        return
    (line,) = [line for line in logged if f"/healthz?probe={probe} " in line]
    if log_format == "json":
        record = json.loads(line)
        assert record["logger"] == "gunicorn.access"
        line = record["message"]
    assert f'"GET /healthz?probe={probe} HTTP/1.1" 200' in line


def configuration():
    """deploy/gunicorn.conf.py's names, as gunicorn reads them."""
    return runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({}, None),  # no cgroup files at all
        ({"cpu.max": "max 100000\n"}, None),  # cgroup v2, no limit
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 cores' time: two processes keep it busy
        ({"cpu.max": "50000 100000\n"}, 1),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1
        ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4),
    ],
)
def test_a_cgroup_cpu_quota_is_read_in_cores(tmp_path, files, quota):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert configuration()["cpu_quota"](str(tmp_path)) == quota


def test_a_quota_smaller_than_the_cores_sets_the_workers_and_no_pinning():
    # Kubernetes CPU limits: the affinity lists all 64 cores of the host, the quota allows 2.
    names = configuration()
    usable_cores, pinned = names["usable_cores"], names["pinned"]
    assert usable_cores(list(range(64)), 2) == 2
    assert not pinned(list(range(64)), 2)  # those cores are shared: a worker must move off a busy one
    assert usable_cores(list(range(64)), None) == 64
    assert pinned(list(range(64)), 64)
    assert usable_cores([0, 1], 8) == 2
    assert pinned([0, 1], 2)
    assert usable_cores([], None) == (os.cpu_count() or 1)
    assert not pinned([0], 1)
