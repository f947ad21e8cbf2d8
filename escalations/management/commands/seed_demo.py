"""Load a realistic demo set: reviewers, agents in every domain, escalations of every reason
and tier. Everything goes through the services, as a real agent's package would. Idempotent:
an escalation is known by its agent and run_id, and is never created twice."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from escalations import services
from escalations.models import Agent, Escalation, Event, Policy
from escalations.schemas import EscalationIn

PASSWORD = "handoff-demo"
# username, first name, last name, groups
REVIEWERS = [
    ("demo", "Demo", "Reviewer", ("reviewer", "manager")),
    ("sam", "Sam", "Okafor", ("reviewer",)),
]
AGENTS = [
    ("refactor-bot", "code"),
    ("schema-pilot", "db-migration"),
    ("deploy-captain", "default"),
    ("lit-scout", "research"),
    ("support-drafter", "default"),
]

DECIDED_AFTER_MINUTES = 25  # how long the demo reviewer took on the decided ones
Step = tuple  # (action, outcome, detail or "")


@dataclass
class Demo:
    """One demo escalation: the package plus where it sits in time and what happens to it."""

    agent: str
    run_id: str
    package: dict[str, Any]
    history: list[Step]
    ago: int  # minutes before now that the agent posted it
    history_minutes: int = 40  # how long the history took, ending at posting time
    respond_in: int | None = None  # minutes after posting
    decide: dict[str, Any] | None = None  # a human decision by `demo`
    claim_by: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _steps(history: list[Step], posted: datetime, minutes: int) -> list[dict[str, Any]]:
    """Spread the steps evenly over the minutes before posting."""
    n = len(history)
    out = []
    for i, (action, outcome, detail) in enumerate(history):
        at = posted - timedelta(minutes=minutes) + timedelta(minutes=minutes) * (i / max(1, n - 1))
        step = {"at": at.isoformat(), "action": action, "outcome": outcome}
        if detail:
            step["detail"] = detail
        out.append(step)
    return out


# ---------------------------------------------------------------- histories

CHARGE_HISTORY: list[Step] = [
    ("Read the task: move billing to the new Money type (JIRA BILL-2231)", "info", ""),
    ("git checkout -b bill-2231-money-type", "ok", ""),
    ("Read billing/charge.py (412 lines)", "ok", ""),
    ("Read billing/money.py: Money(amount: Decimal, currency: str)", "ok", ""),
    ("grep -rn 'charge(' billing/ services/ jobs/", "ok", "31 matches in 14 files"),
    ("Classified the 31 matches: 14 real callers, 17 comments or mocks", "info", ""),
    ("Changed charge(amount_cents: int, currency) to charge(amount: Money)", "ok", ""),
    (
        "Ran mypy on billing/",
        "failed",
        'billing/invoice.py:88: error: Argument 1 to "charge" has incompatible type "int"; expected "Money"\nbilling/refunds.py:41: error: ...\n(14 errors in 9 files)',
    ),
    ("Updated billing/invoice.py (3 call sites)", "ok", ""),
    ("Updated billing/refunds.py (2 call sites)", "ok", ""),
    ("Updated billing/subscriptions.py (4 call sites)", "ok", ""),
    (
        "Ran pytest billing/tests -x",
        "failed",
        "FAILED billing/tests/test_subscriptions.py::test_proration_rounds_half_even\nAssertionError: Money('10.005', 'EUR') != Money('10.00', 'EUR')",
    ),
    ("Read the proration code: it rounds cents as ints before charging", "info", ""),
    ("Moved rounding into Money.quantize() with ROUND_HALF_EVEN", "ok", ""),
    ("Ran pytest billing/tests", "ok", "412 passed in 38.2s"),
    (
        "Looked at billing/legacy/ (5 remaining callers)",
        "info",
        "billing/legacy has no tests, last touched 2021; used by the reseller CSV import.",
    ),
    ("Checked coverage for billing/legacy", "info", "0% line coverage"),
    ("Updated billing/legacy/reseller_import.py (2 call sites)", "ok", ""),
    (
        "Ran the reseller import against fixtures/resellers-2023.csv",
        "failed",
        "Traceback (most recent call last):\n  File \"billing/legacy/reseller_import.py\", line 212, in import_row\n    charge(row['total'] * 100, row['currency'])\nTypeError: charge() takes 1 positional argument but 2 were given",
    ),
    ("Found a third call path via getattr(module, 'charge') in legacy/dispatch.py", "info", ""),
    ("Reverted billing/legacy changes", "ok", ""),
    ("Drafted a shim: charge_cents(amount_cents, currency) -> charge(Money(...))", "ok", ""),
    ("Ran pytest with the shim", "ok", "412 passed"),
    ("Asked: does the shim double the public API? Yes: two ways to charge", "info", ""),
    ("Checked CODEOWNERS for billing/legacy", "info", "@payments-core (2 people, one on leave)"),
    (
        "Searched Slack export for 'reseller import' decisions",
        "skipped",
        "No access to the Slack export from this runner",
    ),
    (
        "Ran the full test suite",
        "failed",
        "3 failures in services/payouts: they mock charge() with the old signature",
    ),
    ("Updated services/payouts mocks", "ok", ""),
    ("Ran the full test suite", "ok", "2,904 passed, 12 skipped in 6m41s"),
    ("Estimated diff size: update-callers 19 files / shim 6 files", "info", ""),
    ("Checked the release calendar", "info", "Billing freeze starts Thursday 18:00 UTC"),
    ("Opened draft PR #4471 with both variants as separate commits", "ok", ""),
    ("Paused: the choice changes billing/legacy, which nobody can test", "info", ""),
]

CANARY_HISTORY: list[Step] = [
    (
        "Deploy payments-api v4.18.0 to canary (5% traffic)",
        "ok",
        "image sha256:9f3c…e1 in eu-west-1",
    ),
    ("Waited for canary warm-up (5 min)", "ok", ""),
    ("Health check /healthz on 6 canary pods", "ok", ""),
    (
        "Compared canary vs baseline error rate",
        "failed",
        "canary 2.31% 5xx vs baseline 0.18% (threshold 1.0%)",
    ),
    (
        "Pulled canary logs for 5xx",
        "info",
        "87% are 502 from upstream fraud-scorer: connect timeout after 800ms",
    ),
    ("Checked fraud-scorer status page", "ok", "All systems operational"),
    ("Restarted 2 canary pods with the highest error rate", "ok", ""),
    ("Compared canary vs baseline error rate", "failed", "canary 2.09% vs baseline 0.21%"),
    (
        "Diffed v4.17 → v4.18 HTTP client config",
        "info",
        "httpx pool limits changed: max_connections 100 → 20 (PR #3310, 'reduce memory')",
    ),
    ("Raised the canary's pool to 100 via env override", "ok", ""),
    ("Compared canary vs baseline error rate", "failed", "canary 1.74% vs baseline 0.19%"),
    ("Checked p99 latency", "info", "canary 1.9 s vs baseline 420 ms"),
    (
        "Looked for a feature flag to disable the new 3DS flow",
        "skipped",
        "flag 'three_ds_v2' is owned by another team; not allowed to toggle",
    ),
    ("Counted affected requests", "info", "≈ 1,140 failed checkouts in 40 minutes on canary"),
    ("Retry cap reached (3 attempts to stabilise the canary)", "failed", ""),
    ("Halted the rollout at 5%", "ok", "deploy pipeline paused; baseline still on v4.17.2"),
]

SCOPE_HISTORY: list[Step] = [
    ("Task: replace the deprecated requests.Session in services/notify with httpx", "info", ""),
    ("Planned change: 9 files under services/notify", "info", ""),
    ("Replaced Session() in services/notify/client.py", "ok", ""),
    (
        "Ran tests for services/notify",
        "failed",
        "ImportError: cannot import name 'RetrySession' from 'common.http'",
    ),
    ("Found common/http.py subclasses requests.Session (used by 11 packages)", "info", ""),
    ("Rewrote common/http.py on httpx.Client", "ok", ""),
    (
        "Ran the full test suite",
        "failed",
        "38 failures: tests use responses (requests-only mocking library)",
    ),
    ("Converted 12 test modules from responses to respx", "ok", ""),
    (
        "Ran the full test suite",
        "failed",
        "9 failures in services/webhooks: proxy auth semantics differ",
    ),
    ("Measured the change", "info", "47 files changed, +1,812 −1,406; plan said 9 files"),
    ("Paused: the scope is 5× the plan", "info", ""),
]

ROLLBACK_BACKFILL: list[Step] = [
    ("Read migration 0142_orders_currency: adds orders.currency (nullable)", "ok", ""),
    ("Applied 0142 on staging", "ok", "0.4 s"),
    ("Counted rows to backfill on production replica", "ok", "38,412,907 rows"),
    ("Backfill dry run on staging, batch 10k", "ok", "41 min, replica lag peak 3 s"),
    ("Backfill dry run on staging, batch 50k", "ok", "12 min, replica lag peak 19 s"),
    ("Checked the replica lag SLO", "info", "alert at 10 s, page at 30 s"),
]


def _long_research_history() -> list[Step]:
    steps: list[Step] = [
        ("Task: 'Which vector DB should we use for 50M embeddings?' (RES-88)", "info", "")
    ]
    sources = [
        ("ann-benchmarks.com results (glove-100-angular)", "ok"),
        ("Vendor A whitepaper: 'p99 under 10 ms at 100M vectors'", "ok"),
        ("Vendor B benchmark repo (GitHub)", "ok"),
        ("Blog: 'We moved off Vendor A' (2024)", "ok"),
        ("VLDB 2023 paper on HNSW memory overhead", "failed"),
        ("Vendor A pricing page", "ok"),
        ("Vendor B pricing page", "ok"),
        ("HN thread on Vendor B outages", "ok"),
        ("pgvector 0.7 release notes", "ok"),
        ("Internal doc: current Postgres fleet sizing", "ok"),
        ("Re-ran Vendor B's benchmark script locally", "failed"),
        ("Re-ran it with the documented dataset", "ok"),
        ("Vendor A benchmark methodology appendix", "skipped"),
    ]
    for title, outcome in sources:
        detail = ""
        if outcome == "failed" and "VLDB" in title:
            detail = "HTTP 403: paywalled (ACM Digital Library). Abstract only."
        elif outcome == "failed":
            detail = "OOM-killed at 12M vectors on the 16 GB runner: the script keeps all vectors in RAM."
        elif outcome == "skipped":
            detail = "Appendix is gated behind a sales contact form."
        steps.append((f"Read {title}", outcome, detail))
        steps.append((f"Took notes on {title.split(':')[0]}", "info", ""))
    steps += [
        (
            "Compared p99 claims side by side",
            "info",
            "A: 9 ms (their hardware, 100M); B: 31 ms (c6i.4xlarge, 50M); pgvector: 48 ms (ours, 10M)",
        ),
        ("Noticed A measures p99 at 10 QPS and B at 500 QPS", "info", ""),
        ("Drafted the comparison table", "ok", ""),
        ("Paused: the two vendor numbers are not comparable", "info", ""),
    ]
    return steps


# ---------------------------------------------------------------- the set


def demos() -> list[Demo]:
    return [
        Demo(
            agent="refactor-bot",
            run_id="bill-2231",
            ago=95,
            history_minutes=85,
            respond_in=300,
            history=CHARGE_HISTORY,
            package={
                "title": "Update the 14 callers of charge() or add a compatibility shim?",
                "uncertainty": (
                    "charge() now takes a Money value. 14 callers break; 9 are updated and tested. "
                    "The last 5 live in billing/legacy (reseller CSV import), which has no tests and "
                    "a getattr-based dispatch I cannot trace statically. Updating them risks silently "
                    "mis-charging resellers; a shim keeps them working but leaves two ways to charge."
                ),
                "reason": "approach_choice",
                "confidence": 0.62,
                "options": [
                    {
                        "key": "update-callers",
                        "label": "Update all 14 callers, including billing/legacy",
                        "description": "One API. billing/legacy gets changed without tests; I add a smoke test for the CSV import first.",
                        "recommended": True,
                        "args": {
                            "paths": ["billing/", "services/payouts/"],
                            "add_smoke_test": True,
                            "pr": 4471,
                        },
                    },
                    {
                        "key": "shim",
                        "label": "Add charge_cents() shim for billing/legacy only",
                        "description": "Legacy keeps calling the old shape through a 6-line shim marked deprecated.",
                        "args": {
                            "shim_module": "billing/legacy/compat.py",
                            "deprecate_in": "2026-Q2",
                        },
                    },
                    {
                        "key": "split",
                        "label": "Ship the 9 tested callers now, legacy in a follow-up PR",
                        "args": {
                            "first_pr_paths": [
                                "billing/invoice.py",
                                "billing/refunds.py",
                                "billing/subscriptions.py",
                            ]
                        },
                    },
                ],
                "cost_of_delay": {
                    "blocking": True,
                    "impact": "high",
                    "blocked_tasks": 3,
                    "note": "Billing freeze starts Thursday 18:00 UTC; BILL-2232..2234 wait on this PR.",
                },
                "action": {
                    "name": "git push + open PR #4471",
                    "planned_scope": 12,
                    "actual_scope": 14,
                },
                "attempts": 1,
                "links": [
                    {
                        "label": "Draft PR #4471",
                        "url": "https://git.example.com/acme/shop/pull/4471",
                    },
                    {"label": "BILL-2231", "url": "https://jira.example.com/browse/BILL-2231"},
                ],
                "metadata": {
                    "repo": "acme/shop",
                    "branch": "bill-2231-money-type",
                    "ci_run": 88213,
                },
            },
        ),
        Demo(
            agent="schema-pilot",
            run_id="mig-0143-drop-legacy-email",
            ago=370,
            history_minutes=50,
            respond_in=120,
            history=[
                (
                    "Read migration 0143_drop_users_legacy_email",
                    "ok",
                    "ALTER TABLE users DROP COLUMN legacy_email;",
                ),
                (
                    "Searched the codebase for legacy_email",
                    "ok",
                    "0 references since commit 8e1f2c0 (3 months ago)",
                ),
                (
                    "Checked pg_stat_user_tables for reads of the column",
                    "skipped",
                    "column-level stats are not collected",
                ),
                (
                    "Queried the analytics warehouse for legacy_email",
                    "failed",
                    "2 dbt models still select users.legacy_email (marts/crm_export, marts/old_newsletter)",
                ),
                (
                    "Checked the latest backup",
                    "ok",
                    "base backup 04:00 UTC + WAL archive; PITR window 7 days",
                ),
                (
                    "Estimated the restore time for one column",
                    "info",
                    "≈ 3 h: restore to a side instance, then copy 2.1M values back",
                ),
                ("Ran the migration on staging", "ok", "lock held 180 ms"),
                ("Paused before production: dropping is irreversible", "info", ""),
            ],
            package={
                "title": "Drop users.legacy_email on production (2.1M rows)?",
                "uncertainty": (
                    "No application code reads users.legacy_email any more, but two dbt models in the "
                    "warehouse still select it (crm_export, old_newsletter). I cannot tell whether anyone "
                    "still uses those exports. Dropping the column cannot be undone without a 3-hour restore."
                ),
                "reason": "irreversible_action",
                "confidence": 0.88,
                "options": [
                    {
                        "key": "drop-now",
                        "label": "Drop the column now",
                        "description": "Runs ALTER TABLE ... DROP COLUMN in the 15:00 window. The dbt models will fail on their next run.",
                        "irreversible": True,
                        "recommended": True,
                        "args": {
                            "migration": "0143_drop_users_legacy_email",
                            "window": "15:00 UTC",
                            "notify": "#data-eng",
                        },
                    },
                    {
                        "key": "rename-first",
                        "label": "Rename it to _legacy_email_deprecated for two weeks, then drop",
                        "description": "Anything still reading it fails loudly but the data stays.",
                        "args": {"rename_to": "_legacy_email_deprecated", "drop_after_days": 14},
                    },
                    {"key": "skip", "label": "Skip 0143 and ship the rest of the release"},
                ],
                "cost_of_delay": {
                    "blocking": True,
                    "impact": "critical",
                    "blocked_tasks": 2,
                    "note": "Release 2026.47 waits on this migration; the deploy window closes at 17:00 UTC.",
                },
                "action": {
                    "name": "ALTER TABLE users DROP COLUMN legacy_email",
                    "irreversible": True,
                },
                "domain": "db-migration",
                "links": [
                    {
                        "label": "Migration 0143 on GitHub",
                        "url": "https://git.example.com/acme/shop/blob/main/db/migrations/0143_drop_users_legacy_email.py",
                    }
                ],
                "metadata": {
                    "database": "shop-prod-eu",
                    "table_rows": 2104331,
                    "pg_version": "16.4",
                },
            },
        ),
        Demo(
            agent="refactor-bot",
            run_id="notify-httpx",
            ago=50,
            history_minutes=120,
            respond_in=600,
            history=SCOPE_HISTORY,
            package={
                "title": "httpx migration grew from 9 files to 47: continue, or cut it back?",
                "uncertainty": (
                    "Replacing requests in services/notify pulled in common/http.py, which 11 packages "
                    "subclass, and every test that mocks with `responses`. 38 test failures are fixed; 9 "
                    "remain in services/webhooks where proxy authentication behaves differently under httpx. "
                    "I don't know if the webhooks team wants this change in their code at all."
                ),
                "reason": "scope_mismatch",
                "confidence": 0.71,
                "options": [
                    {
                        "key": "continue",
                        "label": "Continue: migrate common/http and all callers",
                        "recommended": True,
                        "args": {"max_files": 60},
                    },
                    {
                        "key": "adapter",
                        "label": "Keep requests in common/http; migrate services/notify only",
                        "args": {"files": 9},
                    },
                    {"key": "abandon", "label": "Abandon the migration and close the branch"},
                ],
                "cost_of_delay": {"blocking": False, "impact": "medium", "blocked_tasks": 0},
                "action": {
                    "name": "refactor: requests → httpx",
                    "planned_scope": 9,
                    "actual_scope": 47,
                },
                "attempts": 2,
            },
        ),
        Demo(
            agent="deploy-captain",
            run_id="deploy-payments-4.18.0",
            ago=42,
            history_minutes=40,
            respond_in=75,
            history=CANARY_HISTORY,
            package={
                "title": "payments-api v4.18 canary at 2% errors: roll back, or hotfix the pool size?",
                "uncertainty": (
                    "The canary fails 1.7-2.3% of checkouts with 502s from fraud-scorer connect timeouts. "
                    "Raising the HTTP pool back to 100 helped but did not fix it, so the pool change in "
                    "PR #3310 is not the whole cause. I cannot tell whether v4.18's new 3DS flow adds "
                    "the extra fraud-scorer calls, and I am not allowed to toggle its flag."
                ),
                "reason": "repeated_failure",
                "confidence": 0.45,
                "options": [
                    {
                        "key": "rollback",
                        "label": "Roll the canary back to v4.17.2",
                        "recommended": True,
                        "args": {"target": "v4.17.2", "drain_seconds": 60},
                    },
                    {
                        "key": "hotfix",
                        "label": "Build v4.18.1 with max_connections=100 and retry the canary",
                        "args": {"max_connections": 100, "canary_percent": 5},
                    },
                    {
                        "key": "hold",
                        "label": "Keep the canary at 5% for another hour to collect traces",
                        "args": {"minutes": 60},
                    },
                ],
                "cost_of_delay": {
                    "blocking": True,
                    "impact": "critical",
                    "blocked_tasks": 6,
                    "note": "≈ 28 failed checkouts per minute while the canary is up.",
                },
                "action": {"name": "progressive rollout payments-api v4.18.0"},
                "attempts": 3,
                "links": [
                    {
                        "label": "Canary dashboard",
                        "url": "https://grafana.example.com/d/payments-canary?from=now-1h",
                    },
                    {
                        "label": "PR #3310 (pool limits)",
                        "url": "https://git.example.com/acme/payments/pull/3310",
                    },
                ],
                "metadata": {"region": "eu-west-1", "canary_pods": 6, "error_budget_left": "41%"},
            },
        ),
        Demo(
            agent="lit-scout",
            run_id="res-88-vector-db",
            ago=180,
            history_minutes=170,
            history=_long_research_history(),
            package={
                "title": "Vendor benchmarks disagree on p99 latency: which numbers go in the vector-DB report?",
                "uncertainty": (
                    "Vendor A claims 9 ms p99 at 100M vectors, measured at 10 QPS on their hardware; "
                    "Vendor B claims 31 ms at 500 QPS on c6i.4xlarge. My own run of B's script only "
                    "reached 12M vectors on our runner. I can't put the two on one chart honestly."
                ),
                "reason": "missing_information",
                "confidence": 0.58,
                "options": [
                    {
                        "key": "own-numbers",
                        "label": "Report only our own measurements (pgvector, B at 12M)",
                        "recommended": True,
                    },
                    {
                        "key": "vendor-numbers",
                        "label": "Report vendor numbers with their conditions in footnotes",
                    },
                ],
                "cost_of_delay": {"blocking": False, "impact": "low"},
                "domain": "research",
            },
        ),
        Demo(
            agent="lit-scout",
            run_id="res-91-hnsw-memory",
            ago=260,
            history_minutes=30,
            respond_in=24 * 60,
            history=[
                ("Searched for HNSW memory overhead measurements", "ok", "6 candidate papers"),
                ("Downloaded 3 open-access papers", "ok", ""),
                (
                    "Tried ACM DL for 'Graph-based ANN at billion scale' (VLDB 2023)",
                    "failed",
                    "HTTP 403: institutional login required",
                ),
                ("Tried IEEE Xplore for 'Memory-efficient HNSW' (ICDE 2024)", "failed", "HTTP 403"),
                ("Searched arXiv for preprints of both", "failed", "No preprints found"),
                ("Tried the authors' homepages", "skipped", "one 404, one links back to ACM"),
            ],
            package={
                "title": "Two key papers on HNSW memory are paywalled: can someone fetch them?",
                "uncertainty": (
                    "The memory section of RES-91 rests on two papers (VLDB 2023, ICDE 2024) that I "
                    "cannot open: no preprints, and the authors' pages link back to the publishers. "
                    "Without them the memory estimate rests on one blog post and my own 12M-vector run."
                ),
                "reason": "missing_access",
                "confidence": 0.35,
                "options": [
                    {
                        "key": "wait-for-pdfs",
                        "label": "Wait for a human to upload the two PDFs",
                        "recommended": True,
                        "args": {"upload_to": "s3://research-inbox/res-91/"},
                    },
                    {
                        "key": "proceed-without",
                        "label": "Write the section from open sources and flag the gap",
                    },
                ],
                "cost_of_delay": {"blocking": False, "impact": "low"},
                "domain": "research",
                "links": [
                    {
                        "label": "VLDB 2023 paper (ACM DL)",
                        "url": "https://dl.acm.org/doi/10.14778/0000000.0000000",
                    }
                ],
            },
        ),
        Demo(
            agent="refactor-bot",
            run_id="vendored-bazel",
            ago=140,
            history_minutes=60,
            respond_in=48 * 60,
            history=[
                ("Task: bump protobuf to 5.28 across the monorepo", "info", ""),
                ("Updated requirements*.txt (7 files)", "ok", ""),
                (
                    "Found third_party/geo/ built with Bazel (BUILD, WORKSPACE)",
                    "info",
                    "The rest of the repo uses setuptools; no Bazel in CI images",
                ),
                ("Tried `bazel build //third_party/geo/...`", "failed", "bazel: command not found"),
                (
                    "Read third_party/geo/README",
                    "info",
                    "'Vendored from upstream 2019; regenerate protos with genproto.sh'",
                ),
                (
                    "Ran genproto.sh",
                    "failed",
                    "protoc-gen-go: program not found or is not executable",
                ),
            ],
            package={
                "title": "Vendored third_party/geo is built with Bazel and Go protoc plugins I've never seen here",
                "uncertainty": (
                    "The protobuf bump needs third_party/geo's generated code regenerated, but it is "
                    "built with Bazel and a Go protoc plugin that exist nowhere else in this repo or CI. "
                    "I don't know whether that module is still used or who owns it."
                ),
                "reason": "novelty",
                "confidence": 0.8,
                "options": [
                    {
                        "key": "pin-old",
                        "label": "Pin protobuf 4.x for third_party/geo only",
                        "recommended": True,
                    },
                    {
                        "key": "install-bazel",
                        "label": "Add Bazel and protoc-gen-go to the CI image",
                        "args": {"bazel": "7.3.1"},
                    },
                    {
                        "key": "remove-module",
                        "label": "Remove third_party/geo if nothing imports it",
                    },
                ],
                "cost_of_delay": {"blocking": False, "impact": "medium"},
                "domain": "code",
            },
        ),
        Demo(
            agent="schema-pilot",
            run_id="backfill-verify-0142",
            ago=200,
            history_minutes=25,
            respond_in=60,
            history=[
                (
                    "Backfilled orders.currency on production (batch 10k)",
                    "ok",
                    "38,412,907 rows in 3h12m",
                ),
                (
                    "Tried to verify with a COUNT on the read replica",
                    "failed",
                    'FATAL: password authentication failed for user "schema_pilot_ro"',
                ),
                (
                    "Checked the vault path for replica credentials",
                    "failed",
                    "permission denied: secret/data/db/shop-prod-eu/replica-ro",
                ),
                (
                    "Verified a 1% sample on the primary instead",
                    "ok",
                    "0 NULLs in 384,129 sampled rows",
                ),
                ("Paused: a full check on the primary would hold locks", "info", ""),
            ],
            package={
                "title": "Need read-replica credentials to verify the orders.currency backfill",
                "uncertainty": (
                    "The backfill finished, and a 1% sample on the primary shows no NULLs, but the "
                    "NOT NULL constraint in migration 0144 needs a full check. My vault role cannot read "
                    "the replica credentials, and a full scan on the primary would block writes."
                ),
                "reason": "missing_access",
                "confidence": 0.66,
                "options": [
                    {
                        "key": "grant-access",
                        "label": "Grant schema-pilot read access to the replica secret",
                        "recommended": True,
                        "args": {
                            "vault_path": "secret/data/db/shop-prod-eu/replica-ro",
                            "ttl": "1h",
                        },
                    },
                    {
                        "key": "not-valid",
                        "label": "Add the constraint as NOT VALID and validate later",
                    },
                ],
                "cost_of_delay": {
                    "blocking": True,
                    "impact": "high",
                    "blocked_tasks": 1,
                    "note": "Migration 0144 and the currency column rollout wait on this.",
                },
                "domain": "db-migration",
            },
        ),
        Demo(
            agent="deploy-captain",
            run_id="tls-rotate-api",
            ago=30,
            history_minutes=10,
            history=[
                ("cert-manager reported api.example.com expires in 9 days", "info", ""),
                ("Issued the new certificate (Let's Encrypt)", "ok", ""),
                ("Validated the chain with openssl s_client against staging", "ok", ""),
            ],
            package={
                "title": "Rotate the TLS certificate for api.example.com now",
                "uncertainty": (
                    "The new certificate validates on staging; rotating now instead of in the Sunday "
                    "window only risks the few clients that pin the old intermediate, and we know of none."
                ),
                "reason": "other",
                "confidence": 0.95,
                "options": [
                    {"key": "rotate-now", "label": "Rotate now", "recommended": True},
                    {"key": "wait-window", "label": "Rotate in the Sunday maintenance window"},
                ],
                "cost_of_delay": {"blocking": False, "impact": "low"},
            },
        ),
        Demo(
            agent="refactor-bot",
            run_id="quarantine-3ds-test",
            ago=15,
            history_minutes=20,
            history=[
                (
                    "tests/test_checkout.py::test_3ds_redirect failed 4 of the last 50 runs",
                    "info",
                    "",
                ),
                (
                    "Reproduced locally with --count=200",
                    "failed",
                    "3/200 failures: timing-dependent redirect assertion",
                ),
                ("Opened issue #5120 with the reproduction", "ok", ""),
            ],
            package={
                "title": "Quarantine the flaky test_3ds_redirect and link issue #5120",
                "uncertainty": (
                    "The failure is a timing race in the test, not in checkout; quarantining it keeps "
                    "main green while #5120 is fixed, at the cost of one unguarded redirect assertion."
                ),
                "reason": "approach_choice",
                "confidence": 0.91,
                "options": [
                    {
                        "key": "quarantine",
                        "label": "Mark it flaky and link #5120",
                        "recommended": True,
                    },
                    {"key": "fix-now", "label": "Fix the race now"},
                ],
                "cost_of_delay": {"blocking": False, "impact": "low"},
                "domain": "code",
            },
        ),
        Demo(
            agent="lit-scout",
            run_id="interviews-cluster",
            ago=70,
            history_minutes=90,
            history=[
                ("Loaded 40 interview transcripts", "ok", ""),
                ("Coded them with the JTBD template", "ok", ""),
                ("Clustered by job: 5 clusters", "ok", ""),
                ("Clustered by segment: 3 clusters", "ok", ""),
            ],
            package={
                "title": "Summarise 40 customer interviews by job-to-be-done rather than by segment",
                "uncertainty": (
                    "Both clusterings are defensible; jobs give 5 sharper themes, segments match how "
                    "sales reads reports. I'd lead with jobs and add a segment cross-table."
                ),
                "reason": "approach_choice",
                "confidence": 0.62,
                "options": [
                    {
                        "key": "by-job",
                        "label": "Lead with jobs, segment cross-table in an appendix",
                        "recommended": True,
                    },
                    {"key": "by-segment", "label": "Lead with segments"},
                ],
                "cost_of_delay": {"blocking": False, "impact": "low"},
                "domain": "research",
            },
        ),
        Demo(
            agent="schema-pilot",
            run_id="backfill-orders-currency",
            ago=26 * 60,
            history_minutes=60,
            history=ROLLBACK_BACKFILL,
            decide={
                "kind": "option",
                "option": "batch-10k",
                "args": {"batch_size": 10000, "sleep_ms": 200},
                "instruction": "Pause the backfill if replica lag exceeds 8 s.",
            },
            package={
                "title": "Backfill orders.currency in batches of 10k or 50k?",
                "uncertainty": (
                    "50k batches finish in 12 minutes on staging but pushed replica lag to 19 s, above "
                    "the 10 s alert. 10k batches stay under 3 s but take 41 minutes, i.e. about 3 hours on "
                    "production. I don't know which the on-call team prefers."
                ),
                "reason": "approach_choice",
                "confidence": 0.7,
                "options": [
                    {
                        "key": "batch-10k",
                        "label": "10k rows per batch (≈ 3 h, lag under 3 s)",
                        "recommended": True,
                        "args": {"batch_size": 10000},
                    },
                    {
                        "key": "batch-50k",
                        "label": "50k rows per batch (≈ 50 min, lag up to 19 s)",
                        "args": {"batch_size": 50000},
                    },
                ],
                "cost_of_delay": {"blocking": True, "impact": "medium", "blocked_tasks": 1},
                "domain": "db-migration",
            },
        ),
        Demo(
            agent="deploy-captain",
            run_id="rotate-edge-certs",
            ago=3 * 60,
            history_minutes=25,
            decide={
                "kind": "take_over",
                "instruction": "Stop here: I'll rotate the edge certificates by hand in tonight's window.",
            },
            history=[
                ("Task: rotate the TLS certificates on the 6 edge proxies", "info", ""),
                ("Issued new certificates from the internal CA", "ok", "6 certificates, valid 90 days"),
                (
                    "Reloaded edge-1 with the new certificate",
                    "failed",
                    "nginx: [emerg] SSL_CTX_use_PrivateKey failed (key values mismatch)",
                ),
            ],
            package={
                "title": "Edge-1 refused the new certificate: roll back or re-issue?",
                "uncertainty": (
                    "The new key does not match the certificate on edge-1 only; the other five "
                    "proxies are untouched. I can't tell whether the CA or my key store is wrong, "
                    "and I have no access to the CA's audit log."
                ),
                "reason": "missing_access",
                "confidence": 0.55,
                "options": [
                    {"key": "roll-back", "label": "Roll edge-1 back to the old certificate", "recommended": True},
                    {"key": "re-issue", "label": "Re-issue all six certificates"},
                ],
                "cost_of_delay": {"blocking": True, "impact": "high", "blocked_tasks": 2},
            },
        ),
        Demo(
            agent="refactor-bot",
            run_id="remove-v1-export",
            ago=5 * 60,
            history_minutes=30,
            decide={
                "kind": "instruction",
                "instruction": "Don't delete it yet. Add a Sunset header (2026-03-31) and log which API keys still call it; we'll email them.",
            },
            history=[
                ("Task: remove the deprecated GET /v1/export endpoint", "info", ""),
                (
                    "Checked access logs for /v1/export (30 days)",
                    "ok",
                    "1,204 calls from 3 API keys",
                ),
                (
                    "Looked up the 3 API keys",
                    "info",
                    "2 internal (reporting), 1 customer: Northwind Ltd",
                ),
            ],
            package={
                "title": "Delete the deprecated /v1/export endpoint? One customer still calls it",
                "uncertainty": (
                    "/v1/export was deprecated a year ago but Northwind Ltd still calls it about 40 "
                    "times a day. Deleting it breaks their integration; I don't know whether they were told."
                ),
                "reason": "irreversible_action",
                "confidence": 0.6,
                "options": [
                    {
                        "key": "delete",
                        "label": "Delete the endpoint and its tests",
                        "irreversible": True,
                        "recommended": True,
                    },
                    {"key": "keep", "label": "Keep it for now"},
                ],
                "cost_of_delay": {"blocking": False, "impact": "low"},
                "domain": "code",
            },
        ),
        Demo(
            agent="deploy-captain",
            run_id="tf-rds-replace",
            ago=20,
            history_minutes=15,
            respond_in=180,
            claim_by="sam",
            history=[
                ("terraform plan -out=plan.bin (env/prod)", "ok", ""),
                (
                    "Read the plan",
                    "info",
                    "aws_db_instance.shop_prod must be replaced: engine_version 15.7 → 16.4 forces replacement",
                ),
                (
                    "Checked for a snapshot_identifier / blue-green option",
                    "info",
                    "blue_green_update not enabled on this instance",
                ),
                (
                    "Estimated downtime",
                    "info",
                    "20-40 minutes restore from snapshot; connections drop",
                ),
            ],
            package={
                "title": "Terraform wants to replace the production RDS instance (Postgres 15 → 16)",
                "uncertainty": (
                    "The plan replaces aws_db_instance.shop_prod instead of upgrading it in place, "
                    "because blue/green updates are not enabled. Applying it means 20-40 minutes of "
                    "downtime and a restore from snapshot; I am not sure the snapshot is recent enough."
                ),
                "reason": "irreversible_action",
                "confidence": 0.52,
                "options": [
                    {
                        "key": "enable-bluegreen",
                        "label": "Enable blue/green updates first, then re-plan",
                        "recommended": True,
                        "args": {"blue_green_update": {"enabled": True}},
                    },
                    {
                        "key": "apply",
                        "label": "Apply the plan (replace the instance)",
                        "irreversible": True,
                        "args": {"plan": "plan.bin"},
                    },
                ],
                "cost_of_delay": {"blocking": True, "impact": "critical", "blocked_tasks": 4},
                "action": {"name": "terraform apply plan.bin", "irreversible": True},
            },
        ),
        Demo(
            agent="deploy-captain",
            run_id="etl-nightly-schema",
            ago=6 * 60,
            history_minutes=20,
            respond_in=60,
            extra={"timeout_option": "skip-tonight"},
            history=[
                (
                    "Nightly ETL failed: column 'region_code' missing in source",
                    "failed",
                    'psycopg.errors.UndefinedColumn: column "region_code" does not exist',
                ),
                (
                    "Found the upstream rename region_code → region in yesterday's CRM release",
                    "info",
                    "",
                ),
            ],
            package={
                "title": "Nightly ETL broke on an upstream column rename: patch the mapping or skip tonight?",
                "uncertainty": (
                    "The CRM renamed region_code to region yesterday. Patching the mapping is a one-line "
                    "change, but I can't confirm the values kept the same codes (EU-W vs eu-west)."
                ),
                "reason": "other",
                "confidence": 0.55,
                "options": [
                    {
                        "key": "patch-mapping",
                        "label": "Map region → region_code and re-run",
                        "recommended": True,
                    },
                    {
                        "key": "skip-tonight",
                        "label": "Skip tonight's run; dashboards stay a day old",
                    },
                ],
                "cost_of_delay": {"blocking": False, "impact": "medium"},
            },
        ),
        Demo(
            agent="refactor-bot",
            run_id="ci-logs-refund-idem",
            ago=12,
            history_minutes=35,
            respond_in=240,
            history=[
                (
                    "test_refund_idempotency failed on CI runner 12",
                    "failed",
                    "AssertionError: expected 1 refund row, found 2",
                ),
                ("Re-ran it locally 500 times", "ok", "500 passed"),
                (
                    "Tried to fetch runner 12's full logs",
                    "failed",
                    "logs expired after 24 h retention",
                ),
                (
                    "Checked whether runner 12 uses a different Postgres version",
                    "skipped",
                    "runner inventory not accessible",
                ),
            ],
            package={
                "title": "Is the test_refund_idempotency failure a real double-refund bug?",
                "uncertainty": (
                    "It failed once on CI runner 12 (two refund rows for one idempotency key) and never "
                    "locally in 500 runs. Without the runner's logs or its Postgres version I can't tell "
                    "a real race in refunds from a test-isolation problem."
                ),
                "reason": "missing_information",
                "confidence": 0.55,
                "options": [
                    {
                        "key": "add-lock",
                        "label": "Add SELECT ... FOR UPDATE on the idempotency row anyway",
                        "recommended": True,
                    },
                    {
                        "key": "rerun-ci",
                        "label": "Re-run CI 50× on runner 12 and keep the logs",
                        "args": {"runs": 50, "runner": 12},
                    },
                ],
                "cost_of_delay": {"blocking": True, "impact": "high", "blocked_tasks": 2},
                "domain": "code",
            },
        ),
        Demo(
            agent="support-drafter",
            run_id="ticket-48213-gdpr-export",
            ago=110,
            history_minutes=15,
            history=[
                ("Read ticket #48213: GDPR data export request", "info", ""),
                ("Collected profile, orders (2019-2025), support tickets", "ok", ""),
                ("Found 212 archived orders in cold storage (pre-2019)", "info", ""),
            ],
            package={
                "title": "GDPR export for ticket #48213: include pre-2019 archived orders?",
                "uncertainty": (
                    "The export covers 2019-2025. 212 older orders sit in cold storage under a different "
                    "retention policy; including them takes a restore job, and I don't know whether our "
                    "GDPR procedure counts archived data as in scope."
                ),
                "reason": "other",
                "confidence": 0.55,
                "options": [
                    {
                        "key": "include-archive",
                        "label": "Restore and include the archived orders",
                        "recommended": True,
                        "args": {"restore_job": "cold-orders-2015-2018"},
                    },
                    {
                        "key": "exclude-archive",
                        "label": "Send 2019-2025 only and mention the archive",
                    },
                ],
                "cost_of_delay": {
                    "blocking": False,
                    "impact": "medium",
                    "note": "Statutory deadline: 30 days from the request (12 days left).",
                },
            },
        ),
    ]


class Command(BaseCommand):
    help = "Load demo reviewers, agents and escalations (idempotent: safe to run again)."

    def handle(self, *args, **options):
        now = timezone.now()
        users = self._reviewers()
        agents = self._agents()
        created = 0
        for demo in demos():
            escalation, was_created = self._escalation(demo, agents[demo.agent], now)
            created += was_created
            if demo.decide and escalation.is_open:
                services.escalation_decide(
                    escalation_id=escalation.pk,
                    request=services.DecisionRequest(**demo.decide),
                    user=users["demo"],
                    now=min(now, escalation.created_at + timedelta(minutes=DECIDED_AFTER_MINUTES)),
                )
            if demo.claim_by and escalation.is_open:
                services.escalation_claim(escalation_id=escalation.pk, user=users[demo.claim_by])
            if demo.claim_by and not escalation.events.filter(kind=Event.Kind.COMMENTED).exists():
                services.escalation_comment(
                    escalation_id=escalation.pk,
                    user=users[demo.claim_by],
                    body="On it: checking with the owning team before I decide.",
                )
        self._levels(users)
        services.timeouts_apply(now=now)
        services.levels_advance(now=now)
        services.priorities_refresh(now=now)
        call_command("seed_history", stdout=self.stdout)  # insights: weeks of history, rollups
        open_count = Escalation.objects.open().count()
        self.stdout.write(
            f"Demo data: {len(agents)} agents, {created} new escalations ({open_count} open)."
        )
        self.stdout.write(f"Demo login: demo / {PASSWORD}")

    def _reviewers(self) -> dict:
        users = {}
        user_model = get_user_model()
        for username, first, last, groups in REVIEWERS:
            user, _ = user_model.objects.get_or_create(
                username=username,
                defaults={
                    "first_name": first,
                    "last_name": last,
                    "email": f"{username}@example.com",
                },
            )
            if not user.check_password(PASSWORD):
                user.set_password(PASSWORD)
                user.save(update_fields=["password"])
            user.groups.add(*(Group.objects.get_or_create(name=name)[0] for name in groups))
            users[username] = user
        return users

    def _levels(self, users: dict) -> None:
        """Escalation levels for the code and db-migration domains (kept if edited since)."""
        for domain in ("code", "db-migration"):
            policy_row = Policy.objects.filter(domain=domain).first()
            if policy_row is None or policy_row.levels.exists():
                continue
            services.policy_levels_replace(
                policy_row=policy_row,
                specs=[
                    services.LevelSpec(after_minutes=30, priority_boost=10, notify=[users["sam"]]),
                    services.LevelSpec(after_minutes=120, priority_boost=15, notify_managers=True),
                ],
            )

    def _agents(self) -> dict[str, Agent]:
        agents = {}
        for name, domain in AGENTS:
            agent = Agent.objects.filter(name=name).first()
            if agent is None:
                agent = services.agent_create(name=name, domain=domain, resume_url="").agent
            agents[name] = agent
        return agents

    def _escalation(self, demo: Demo, agent: Agent, now: datetime) -> tuple[Escalation, bool]:
        existing = Escalation.objects.filter(agent=agent, run__run_id=demo.run_id).first()
        if existing is not None:
            return existing, False
        posted = now - timedelta(minutes=demo.ago)
        body = {"run_id": demo.run_id, **demo.package, **demo.extra}
        body["history"] = _steps(demo.history, posted, demo.history_minutes)
        delay = dict(body["cost_of_delay"])
        delay.setdefault(
            "stuck_since", (posted - timedelta(minutes=demo.history_minutes)).isoformat()
        )
        if demo.respond_in is not None:
            delay["respond_by"] = (posted + timedelta(minutes=demo.respond_in)).isoformat()
        body["cost_of_delay"] = delay
        with transaction.atomic():
            result = services.escalation_create(
                agent=agent, package=EscalationIn.model_validate(body), body=body, now=posted
            )
        return result.escalation, True
