"""Calibration maps: stored from the judged counts the insights rollups keep, read at
intake and by the gate. The arithmetic is escalations.calibration (pure)."""

from collections.abc import Mapping
from datetime import datetime
from functools import cache

from django.db import transaction
from django.utils import timezone

from escalations import calibration, rows
from escalations.models import CalibrationBin


def calibration_store(
    *, counts: Mapping[tuple[int, str, int], tuple[int, int]], now: datetime | None = None
) -> int:
    """Replace every stored map by those `counts` ({(agent_id, domain, bin): (n, agreed)},
    all judged history) support (calibration.maps_from_counts). One transaction, so a
    reader sees the old maps or the new ones. Returns how many maps are in use."""
    now = now or timezone.now()
    maps = calibration.maps_from_counts(counts)
    rows = [
        CalibrationBin(
            agent_id=agent_id,
            domain=domain,
            bin=number,
            low=calibration.bin_bounds(number)[0],
            high=calibration.bin_bounds(number)[1],
            n=one.n,
            agreed=one.agreed,
            judged=found.judged,
            refreshed_at=now,
        )
        for (agent_id, domain), found in sorted(maps.items())
        for number, one in enumerate(found.bins)
    ]
    with transaction.atomic():
        CalibrationBin.objects.all().delete()
        CalibrationBin.objects.bulk_create(rows, batch_size=2000)
    return len(maps)


@cache
def _bins_sql(domains: int) -> str:
    # CalibrationBin.objects.filter(agent_id=, domain__in=).order_by("domain", "bin") by
    # hand: every create reads it (for `domains` domains).
    return (
        f"SELECT {rows.columns(CalibrationBin, 'b')} FROM escalations_calibrationbin b"  # noqa: S608 (the model's own table and columns, never input)
        f" WHERE b.agent_id = %s AND b.domain IN ({', '.join(['%s'] * domains)})"
        " ORDER BY b.domain, b.bin"
    )


def calibration_maps(agent_id: int, domains: list[str]) -> dict[str, calibration.CalibrationMap]:
    """An agent's stored maps for `domains` and for all its domains, by domain (one query)."""
    wanted = list(dict.fromkeys([*domains, calibration.ALL_DOMAINS]))
    found = rows.fetch_all(_bins_sql(len(wanted)), [agent_id, *wanted])
    return maps_of([rows.instance(CalibrationBin, values) for values in found])


def maps_of(rows_in_order: list[CalibrationBin]) -> dict[str, calibration.CalibrationMap]:
    """The maps of an agent's bin rows (ordered by domain and bin), by domain: a domain
    with fewer than all its bins stored has none."""
    bins: dict[str, list[CalibrationBin]] = {}
    for row in rows_in_order:
        bins.setdefault(row.domain, []).append(row)
    return {
        domain: calibration.CalibrationMap(
            domain, found[0].judged, tuple(calibration.Bin(r.n, r.agreed) for r in found)
        )
        for domain, found in bins.items()
        if len(found) == calibration.BINS
    }


def calibration_for(agent_id: int, domain: str) -> calibration.CalibrationMap | None:
    """The map a package of this agent in `domain` is calibrated by (None: too little
    judged history)."""
    return calibration.map_for(calibration_maps(agent_id, [domain]), domain)
