"""Calibration maps, pure: does an agent's stated confidence mean what it says?

An agent's judged escalations (a person decided, or reviewed a flagged one) say, per
confidence bin of width 0.1, how often the person took the agent's recommended option.
The calibrated confidence of a new package is that rate in its bin, shrunk towards the
stated confidence so that a bin with few judgements barely moves it:

    calibrated = (agreed + PRIOR_WEIGHT * stated) / (judged_in_bin + PRIOR_WEIGHT)

The stated confidence counts as PRIOR_WEIGHT judgements, so a bin with 10 judgements
goes halfway, one with 90 goes 90% of the way. A map is used only once its scope (the
agent in one domain, or the agent in all its domains) has MIN_JUDGED judged escalations;
below that the calibrated confidence is None and the policy reads the stated one.
No ORM here; the backtest's SQL (escalations.backtest) computes the same formula.
"""

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

BINS = 10
# Judged escalations a scope needs before its map is used.
MIN_JUDGED = 30
# How many judgements the stated confidence is worth in each bin.
PRIOR_WEIGHT = 10
ALL_DOMAINS = ""


def bin_bounds(number: int) -> tuple[float, float]:
    """[low, high) of a bin; the last one's high is above 1 so that 1.0 falls in it."""
    return number / BINS, (number + 1) / BINS if number < BINS - 1 else 1.01


def bin_of(confidence: float) -> int:
    """The bin whose [low, high) holds `confidence`, by the same comparisons as the SQL."""
    number = min(max(int(confidence * BINS), 0), BINS - 1)
    low, high = bin_bounds(number)
    if confidence < low:
        return number - 1
    if confidence >= high:
        return number + 1
    return number


def shrunk(stated: float, n: int, agreed: int) -> float:
    return (agreed + PRIOR_WEIGHT * stated) / (n + PRIOR_WEIGHT)


@dataclass(frozen=True)
class Bin:
    n: int = 0
    agreed: int = 0


@dataclass(frozen=True)
class CalibrationMap:
    """One scope's map: `domain` ("" for all the agent's domains), the judged total and
    the ten bins."""

    domain: str
    judged: int
    bins: tuple[Bin, ...]

    def calibrate(self, confidence: float) -> float:
        one = self.bins[bin_of(confidence)]
        return shrunk(confidence, one.n, one.agreed)

    def sentence(self, confidence: float) -> str:
        """What a reviewer reads: "states 0.88; when it said 0.8-0.9, people agreed 61% of
        the time (23 of 38 judged)"."""
        number = bin_of(confidence)
        low, high = bin_bounds(number)
        span = f"{low:.1f}-{min(high, 1.0):.1f}"
        one = self.bins[number]
        where = "" if self.domain == ALL_DOMAINS else f" in {self.domain}"
        if not one.n:
            return (
                f"states {confidence:.2f}; no judged escalation yet when it said {span}{where} "
                f"({self.judged} judged in other bins): taken as stated"
            )
        return (
            f"states {confidence:.2f}; when it said {span}{where}, people agreed "
            f"{one.agreed / one.n:.0%} of the time ({one.agreed} of {one.n} judged), "
            f"so {self.calibrate(confidence):.2f}"
        )


def maps_from_counts(counts: Mapping[tuple[int, str, int], tuple[int, int]]) -> dict[tuple[int, str], CalibrationMap]:
    """The maps in use, keyed (agent_id, domain) and (agent_id, ""), from judged counts
    {(agent_id, domain, bin): (n, agreed)}: a domain's own map where it has MIN_JUDGED
    judgements, the agent's map over all its domains where that has."""
    scopes: dict[tuple[int, str], list[list[int]]] = defaultdict(lambda: [[0, 0] for _ in range(BINS)])
    for (agent_id, domain, number), (n, agreed) in counts.items():
        for key in ((agent_id, domain), (agent_id, ALL_DOMAINS)):
            scopes[key][number][0] += n
            scopes[key][number][1] += agreed
    maps = {}
    for (agent_id, domain), bins in scopes.items():
        judged = sum(n for n, _ in bins)
        if judged >= MIN_JUDGED:
            maps[(agent_id, domain)] = CalibrationMap(domain, judged, tuple(Bin(n, a) for n, a in bins))
    return maps


def map_for(maps: Mapping[str, CalibrationMap], domain: str) -> CalibrationMap | None:
    """Of one agent's maps by domain, the one a package in `domain` uses."""
    return maps.get(domain) or maps.get(ALL_DOMAINS)
