"""Precedents: the decided escalations most like one, for the reviewer who decides it.

"Like": the same agent or the same domain, and the closest title. On PostgreSQL that is
pg_trgm's trigram similarity (`title % q`, ordered by `title <-> q`), served by the GiST
index of migration 0005 over decided escalations; elsewhere (SQLite, or PostgreSQL
without pg_trgm) the latest FALLBACK_CANDIDATES decided escalations of the agent or
domain, ranked by the same trigram similarity computed in Python (trigram_similarity).
"""

import re
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL

from .models import Escalation
from .wire import decision_dict, escalation_url, iso

LIMIT = 5
# pg_trgm's default similarity threshold, used by the fallback too.
MIN_SIMILARITY = 0.3
FALLBACK_CANDIDATES = 300
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


def _candidates(escalation: Escalation) -> QuerySet[Escalation]:
    return (
        Escalation.objects.filter(status__in=DECIDED)
        .filter(Q(agent_id=escalation.agent_id) | Q(domain=escalation.domain))
        .exclude(pk=escalation.pk)
        # the decision and what its signed receipt names (run_id, the agent's secret)
        .select_related("decision", "run", "agent")
    )


def similar(escalation: Escalation, limit: int = LIMIT) -> list[Escalation]:
    """Up to `limit` decided escalations of the same agent or domain, closest title first."""
    rows = _candidates(escalation)
    if _has_trigram():
        title = escalation.title
        return list(
            rows.extra(where=["escalations_escalation.title %% %s"], params=[title])
            .annotate(distance=RawSQL("escalations_escalation.title <-> %s", (title,)))
            .order_by("distance", "id")[:limit]
        )
    scored = []
    for row in rows.order_by("-created_at")[:FALLBACK_CANDIDATES]:
        ratio = trigram_similarity(escalation.title, row.title)
        if ratio >= MIN_SIMILARITY:
            scored.append((-ratio, row.title, row))
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
