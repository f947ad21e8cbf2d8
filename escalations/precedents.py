"""Precedents: the decided escalations most like one, for the reviewer who decides it.

"Like": among the latest CANDIDATES decided escalations of the same agent and the latest
CANDIDATES of the same domain (two short index range scans: esc_decided_agent_idx and
esc_decided_domain_idx), those whose titles share the most trigrams with this one's, at
least MIN_SIMILARITY (pg_trgm's default threshold). On PostgreSQL with pg_trgm,
similarity() ranks them in the database; elsewhere (SQLite) the same similarity is
computed in Python (trigram_similarity). Bounded work whatever the table's size: an
index of all titles answered `title % q` in seconds at a million escalations whose titles
share many words (bench/precedents_bench.py), because most rows passed the threshold.
"""

import re
import uuid
from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet

from .models import Escalation
from .wire import decision_dict, escalation_url, iso

LIMIT = 5
# pg_trgm's default similarity threshold, used by the fallback too.
MIN_SIMILARITY = 0.3
# The latest decided escalations of the agent, and of the domain, that are compared.
CANDIDATES = 500
DECIDED = (Escalation.Status.DECIDED, Escalation.Status.RESUMED)

_trigram: dict[str, bool] = {}


def _has_trigram() -> bool:
    """Whether this database has pg_trgm (asked once a connection alias)."""
    if connection.vendor != "postgresql":
        return False
    if connection.alias not in _trigram:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
            _trigram[connection.alias] = cursor.fetchone() is not None
    return _trigram[connection.alias]


def trigrams(text: str) -> set[str]:
    """pg_trgm's trigrams: each lower-cased alphanumeric word padded "  word ", cut in threes."""
    grams: set[str] = set()
    for word in re.findall(r"[^\W_]+", text.lower()):
        padded = f"  {word} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return grams


def trigram_similarity(a: str, b: str) -> float:
    """Shared trigrams over all trigrams of both (pg_trgm's similarity())."""
    left, right = trigrams(a), trigrams(b)
    union = left | right
    return len(left & right) / len(union) if union else 0.0


def _rows(pks: Sequence[uuid.UUID]) -> QuerySet[Escalation] | list[Escalation]:
    # the decision and what its signed receipt names (run_id, the agent's secret)
    if not pks:
        return []
    return Escalation.objects.filter(pk__in=pks).select_related("decision", "run", "agent")


def _candidates(escalation: Escalation) -> QuerySet[Escalation]:
    """The latest CANDIDATES decided escalations of the agent and of the domain (not this one)."""
    decided = Escalation.objects.filter(status__in=DECIDED).order_by("-created_at").values("pk")
    by_agent = decided.filter(agent_id=escalation.agent_id)[:CANDIDATES]
    by_domain = decided.filter(domain=escalation.domain)[:CANDIDATES]
    return (
        Escalation.objects.filter(Q(pk__in=by_agent) | Q(pk__in=by_domain))
        .exclude(pk=escalation.pk)
        # the decision and what its signed receipt names (run_id, the agent's secret)
        .select_related("decision", "run", "agent")
    )


# The candidates' ids and titles come from the two indexes alone (index-only scans), so
# only the chosen few rows are read from the table.
RANKED_SQL = """
SELECT id FROM (
  (SELECT id, title, created_at FROM escalations_escalation
   WHERE status IN ('decided', 'resumed') AND agent_id = %(agent)s ORDER BY created_at DESC LIMIT %(n)s)
  UNION
  (SELECT id, title, created_at FROM escalations_escalation
   WHERE status IN ('decided', 'resumed') AND domain = %(domain)s ORDER BY created_at DESC LIMIT %(n)s)
) AS candidates
WHERE id <> %(self)s AND similarity(title, %(title)s) >= %(min)s
ORDER BY similarity(title, %(title)s) DESC, created_at DESC
LIMIT %(limit)s
"""


def similar(escalation: Escalation, limit: int = LIMIT) -> list[Escalation]:
    """Up to `limit` decided escalations of the same agent or domain, closest title first."""
    if _has_trigram():
        params: dict[str, str | int | float | uuid.UUID] = {
            "agent": escalation.agent_id,
            "domain": escalation.domain,
            "n": CANDIDATES,
            "self": escalation.pk,
            "title": escalation.title,
            "min": MIN_SIMILARITY,
            "limit": limit,
        }
        with connection.cursor() as cursor:
            cursor.execute(RANKED_SQL, params)
            order = [row[0] for row in cursor.fetchall()]
        found = {e.pk: e for e in _rows(order)}
        return [found[pk] for pk in order if pk in found]
    rows = _candidates(escalation)
    scored = []
    for row in rows:
        ratio = trigram_similarity(escalation.title, row.title)
        if ratio >= MIN_SIMILARITY:
            scored.append((-ratio, -row.created_at.timestamp(), row))
    scored.sort(key=lambda item: item[:2])
    return [row for _, _, row in scored[:limit]]


def similar_dicts(escalation: Escalation, limit: int = LIMIT) -> list[dict[str, Any]]:
    """`similar` of the reviewer API: each {"id", "title", "decision", "decided_at", "url"}."""
    return [
        {
            "id": str(row.id),
            "title": row.title,
            "decision": decision_dict(row.decision, row),
            "decided_at": iso(row.decision.decided_at),
            "url": escalation_url(row.id),
        }
        for row in similar(escalation, limit)
    ]
