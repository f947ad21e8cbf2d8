"""What every part of `make bench` shares: the run's context (arguments, processes, results,
the agents and their open escalations, the package posted), and the databases it prepares."""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from app import (
    BASE_DB,
    BASE_ROWS,
    BENCH_DB,
    REDIS_APP,
    REDIS_BASE,
    DeciderPool,
    app_env,
    pg,
    subprocess_run,
)
from lib import LOGS, RESULTS, ROOT, Processes, ensure_wrk, free_port, log, python, start_profile

GET_IDS, HOOK_WARM, HOOK_N, POLL_WARM, POLL_N = 200, 20, 300, 20, 1000
# Figure 3 also decides HOOK_FAST at 200/s and leaves a backlog of HOOK_DRAIN for the worker to drain.
HOOK_FAST, HOOK_DRAIN = 600, 600


@dataclass
class Context:
    """One run of `make bench`: its arguments, processes and results (`r`, the table's source)."""

    args: argparse.Namespace
    procs: Processes = field(default_factory=Processes)
    r: dict[str, Any] = field(default_factory=lambda: {"started": datetime.now(UTC).isoformat(timespec="seconds")})
    nonce: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    receiver_port: int = field(default_factory=free_port)
    agents: dict[str, Any] = field(default_factory=dict)  # role -> services.NewAgent
    ids: dict[str, list[str]] = field(default_factory=dict)  # role -> open escalation ids
    profiles: list[str] = field(default_factory=list)
    _deciders: DeciderPool | None = None
    _package_base: dict | None = None

    def package(self, run_id: str) -> dict:
        """A valid tier-3 package of about 3 KB (tests/conftest.make_package, padded history)."""
        if self._package_base is None:
            from tests.conftest import make_package  # the tests' own valid package

            t = datetime.now(UTC)
            base = make_package()
            history = list(base.get("history") or [])
            i = 0
            while len(json.dumps({**base, "history": history, "run_id": "bench-xxxxxxxx-t1-000000"})) < 3000:
                history.append({
                    "at": (t - timedelta(minutes=60 - i)).isoformat(),
                    "action": f"step {i}: ran pytest billing/tests/test_charge.py -k legacy_{i}",
                    "outcome": "failed" if i % 3 == 0 else "ok",
                    "detail": f"AssertionError in billing/legacy/invoice_{i}.py: charge() got an "
                    f"unexpected keyword argument 'currency' (call site {i * 17})",
                })
                i += 1
            base["history"] = history
            self._package_base = base
        return {**self._package_base, "run_id": run_id}

    def profile(self, name: str, pid: int, seconds: float) -> None:
        """With --profile: py-spy samples `pid` and its children for `seconds` (in the background)."""
        if self.args.profile:
            self.profiles.append(name)
            start_profile(self.procs, pid, name, max(1, round(seconds)))

    def deciders(self) -> DeciderPool:
        if self._deciders is None:
            self._deciders = DeciderPool(self.procs, self.args.deciders)
        return self._deciders

    def close(self) -> None:
        if self._deciders is not None:
            self._deciders.close()
        self.procs.stop_all()


def prepare(ctx: Context) -> None:
    ensure_wrk()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    RESULTS.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    for old in [*LOGS.iterdir(), *RESULTS.glob("post-*.lua"), *RESULTS.glob("profile-*")]:
        old.unlink()
    (RESULTS / "var").mkdir(exist_ok=True)

    log(f"databases: drop + create {BENCH_DB}; ensure {BASE_DB}")
    with pg() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BASE_DB,)).fetchone():
            conn.execute(f"CREATE DATABASE {BASE_DB}")
        ctx.r["postgres"] = conn.execute("SHOW server_version").fetchone()[0]
    with pg(BASE_DB) as conn:
        conn.execute(
            """CREATE TABLE IF NOT EXISTS bench_escalation (
                 id bigserial PRIMARY KEY, created_at timestamptz NOT NULL,
                 priority integer NOT NULL, status varchar(16) NOT NULL, payload jsonb NOT NULL)"""
        )
        conn.execute(
            "CREATE INDEX IF NOT EXISTS bench_escalation_queue ON bench_escalation "
            "(status, priority DESC, created_at)"
        )
        rows, top = conn.execute("SELECT count(*), coalesce(max(id), 0) FROM bench_escalation").fetchone()
        if rows != BASE_ROWS or top != BASE_ROWS:
            log(f"seeding bench_escalation with {BASE_ROWS} rows of ~3 KB")
            conn.execute("TRUNCATE bench_escalation RESTART IDENTITY")
            conn.execute(
                """INSERT INTO bench_escalation (created_at, priority, status, payload)
                   SELECT now() - g * interval '1 minute', (g * 7919) %% 100,
                          (ARRAY['pending','claimed','decided','resumed'])[1 + g %% 4],
                          jsonb_build_object('n', g, 'text', repeat(md5(g::text), 94))
                   FROM generate_series(1, %s) AS g""",
                (BASE_ROWS,),
            )
            conn.execute("VACUUM ANALYZE bench_escalation")
        conn.execute(
            """CREATE TABLE IF NOT EXISTS bench_write (
                 id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(),
                 payload jsonb NOT NULL)"""
        )
        conn.execute("TRUNCATE bench_write")

    import redis

    for url in (REDIS_APP, REDIS_BASE):
        redis.Redis.from_url(url).flushdb()

    log("migrating handoff_bench")
    started = time.monotonic()
    result = subprocess_run(
        [python(), "manage.py", "migrate", "--noinput"], env=app_env(), timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    log(f"migrated in {time.monotonic() - started:.1f} s")

    os.environ.update(app_env())
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    _fixtures(ctx)


def _fixtures(ctx: Context) -> None:
    """Four agents; the first escalation of each through the service, the rest cloned.

    services.escalation_create costs 20-50 ms a call on this box, most of it the
    channel-layer group_send after commit; 1,500 of them would take a minute. The clones
    are the template's rows (escalation, run, 'created' event) with a new id and run.
    """
    from django.contrib.auth import get_user_model

    from escalations import services
    from escalations.models import Escalation, Event, Run
    from escalations.schemas import EscalationIn

    started = time.monotonic()
    ctx.agents = {}
    hooks = hook_roles(ctx.args.hook_agents)
    for role in ("get", "post", *hooks, "poll"):
        # Figure 3's agents share one receiver, which tells them apart by the path's last part.
        resume_url = f"http://127.0.0.1:{ctx.receiver_port}/hook/{hooks.index(role)}" if role in hooks else ""
        ctx.agents[role] = services.agent_create(
            name=f"bench-{role}-{ctx.nonce}", domain="default", resume_url=resume_url,
            daily_budget=1_000_000,
        )
    get_user_model().objects.create_user("bench-reviewer", password=None)

    def create(role: str, count: int) -> list[str]:
        agent = ctx.agents[role].agent
        body = ctx.package(f"{role}-{ctx.nonce}-0")
        created = services.escalation_create(
            agent=agent, package=EscalationIn.model_validate(body).to_input(body)
        )
        template = created.escalation
        assert created.created, template.tier
        assert template.tier >= 3, template.tier
        assert template.is_open, template.tier
        event = Event.objects.get(escalation=template, kind=Event.Kind.CREATED)
        runs = Run.objects.bulk_create(
            [Run(agent=agent, run_id=f"{role}-{ctx.nonce}-{i}") for i in range(1, count)]
        )
        fields = [f.attname for f in Escalation._meta.concrete_fields if not f.primary_key]
        clones = []
        for run in runs:
            clone = Escalation(**{name: getattr(template, name) for name in fields})
            clone.id, clone.run_id, clone.idempotency_key = uuid.uuid4(), run.id, None
            clones.append(clone)
        Escalation.objects.bulk_create(clones, batch_size=500)
        Event.objects.bulk_create(
            [Event(escalation_id=c.id, kind=event.kind, actor=event.actor, data=event.data, at=event.at)
             for c in clones],
            batch_size=500,
        )
        return [str(template.id)] + [str(c.id) for c in clones]

    ctx.ids = {
        "get": create("get", GET_IDS),
        "hook": _spread(create, hook_roles(ctx.args.hook_agents), HOOK_WARM + HOOK_N + HOOK_FAST + HOOK_DRAIN),
        "poll": create("poll", POLL_WARM + POLL_N),
    }
    n = sum(len(v) for v in ctx.ids.values())
    log(f"fixtures: {len(ctx.agents)} agents, {n} open escalations in {time.monotonic() - started:.1f} s")


def hook_roles(count: int) -> list[str]:
    """Figure 3's agents (bench/run.py --hook-agents): "hook", then "hook-1" ... "hook-{count-1}"."""
    return ["hook"] + [f"hook-{k}" for k in range(1, count)]


def _spread(create: Callable[[str, int], list[str]], roles: list[str], total: int) -> list[str]:
    """`total` open escalations over the agents of `roles`, in turn: decision i is agent i % len(roles)'s,
    so every agent's decisions are spread evenly over each round."""
    each = -(-total // len(roles))
    per_agent = [create(role, each) for role in roles]
    return [per_agent[i % len(roles)][i // len(roles)] for i in range(total)]
