"""Pure statistics of the insights page: buckets, percentiles, calibration, the drift test.

No ORM here: plain numbers in, plain numbers out, so each can be checked by hand.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Upper edges (seconds) of the duration buckets; the last bucket is "longer than 7 days".
DURATION_EDGES: tuple[int, ...] = (
    60,
    300,
    900,
    1800,
    3600,
    7200,
    4 * 3600,
    8 * 3600,
    24 * 3600,
    3 * 86400,
    7 * 86400,
)
DURATION_BUCKETS = len(DURATION_EDGES) + 1
CONFIDENCE_BINS = 10

# The drift rule (stated on the page): see drift_test.
DRIFT_P_VALUE = 0.01
DRIFT_MIN_ESCALATIONS = 10
DRIFT_MIN_EXPOSURE = 30
DRIFT_BASELINE_WEEKS = 4


def duration_bucket(seconds: float) -> int:
    """The index of the bucket a duration falls in (edges are inclusive upper bounds)."""
    for i, edge in enumerate(DURATION_EDGES):
        if seconds <= edge:
            return i
    return len(DURATION_EDGES)


def quantile(counts: Sequence[int], q: float) -> float | None:
    """The q-quantile (0 < q < 1) of durations counted in DURATION_EDGES buckets, in seconds.

    Linear within the bucket that holds it (a bucket's values are taken as spread evenly
    between its edges); in the open last bucket, its lower edge (7 days). None when empty.
    """
    total = sum(counts)
    if total == 0:
        return None
    target = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= target:
            low = DURATION_EDGES[i - 1] if i > 0 else 0
            if i >= len(DURATION_EDGES):
                return float(low)
            high = DURATION_EDGES[i]
            return low + (high - low) * (target - seen) / count
        seen += count
    return float(DURATION_EDGES[-1])


def confidence_bin(confidence: float) -> int:
    """Bins of width 0.1; 1.0 falls in the last one."""
    return min(int(confidence * CONFIDENCE_BINS), CONFIDENCE_BINS - 1)


@dataclass(frozen=True)
class BinSums:
    """One confidence bin: n judged decisions, how many agreed with the agent, and the
    sums that make the Brier score exact (Σc, Σc², Σc·agreed)."""

    n: int = 0
    agreed: int = 0
    sum_c: float = 0.0
    sum_c2: float = 0.0
    sum_cy: float = 0.0

    def __add__(self, other: "BinSums") -> "BinSums":
        return BinSums(
            self.n + other.n,
            self.agreed + other.agreed,
            self.sum_c + other.sum_c,
            self.sum_c2 + other.sum_c2,
            self.sum_cy + other.sum_cy,
        )

    @classmethod
    def of(cls, confidence: float, agreed: bool) -> "BinSums":
        y = 1.0 if agreed else 0.0
        return cls(1, int(agreed), confidence, confidence * confidence, confidence * y)


def expected_calibration_error(bins: Sequence[BinSums]) -> float | None:
    """ECE = Σ_b (n_b / N) · |mean confidence_b − share agreed_b|. None without data."""
    total = sum(b.n for b in bins)
    if total == 0:
        return None
    return sum(b.n / total * abs(b.sum_c / b.n - b.agreed / b.n) for b in bins if b.n)


def brier_score(bins: Sequence[BinSums]) -> float | None:
    """Mean of (c − y)² over decisions, y = 1 when the recommended option was taken:
    Σc² − 2Σc·y + Σy, over N (exact, from the sums). None without data."""
    total = sum(b.n for b in bins)
    if total == 0:
        return None
    value = sum(b.sum_c2 - 2 * b.sum_cy + b.agreed for b in bins) / total
    return max(0.0, value)  # float noise must not print -0.000


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed exactly in log space."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    total = 0.0
    for i in range(k, n + 1):
        log_term = (
            math.lgamma(n + 1)
            - math.lgamma(i + 1)
            - math.lgamma(n - i + 1)
            + i * log_p
            + (n - i) * log_q
        )
        term = math.exp(log_term)
        total += term
        if i > n * p and term < total * 1e-16:
            break
    return min(1.0, total)


@dataclass(frozen=True)
class DriftResult:
    escalations: int  # this week
    exposure: int  # this week's gate checks
    baseline_escalations: int  # the previous four weeks
    baseline_exposure: int
    p_value: float | None  # None: too little volume to test
    is_drifting: bool

    @property
    def rate(self) -> float | None:
        return self.escalations / self.exposure if self.exposure else None

    @property
    def baseline_rate(self) -> float | None:
        return (
            self.baseline_escalations / self.baseline_exposure if self.baseline_exposure else None
        )


def drift_test(
    escalations: int, exposure: int, baseline_escalations: int, baseline_exposure: int
) -> DriftResult:
    """Is this week's escalation rate (escalations per gate check) above the baseline's?

    The exact conditional test of two Poisson rates: if both periods had one rate, this
    week's share of the k + k0 escalations would be Binomial(k + k0, E / (E + E0)), with E
    and E0 the gate checks of each period. One-sided p = P(X >= k). Drifting when
    p < DRIFT_P_VALUE, with at least DRIFT_MIN_ESCALATIONS escalations this week and
    DRIFT_MIN_EXPOSURE gate checks in each period; below that volume it is not tested.
    """
    tested = (
        escalations >= DRIFT_MIN_ESCALATIONS
        and exposure >= DRIFT_MIN_EXPOSURE
        and baseline_exposure >= DRIFT_MIN_EXPOSURE
    )
    p_value = None
    if tested:
        share = exposure / (exposure + baseline_exposure)
        p_value = binomial_upper_tail(escalations, escalations + baseline_escalations, share)
    return DriftResult(
        escalations,
        exposure,
        baseline_escalations,
        baseline_exposure,
        p_value,
        is_drifting=p_value is not None and p_value < DRIFT_P_VALUE,
    )
