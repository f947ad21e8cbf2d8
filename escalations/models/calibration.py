"""Agents' calibration maps: per confidence bin, how often people took the agent's
recommended option. Rebuilt whole by services.calibration_store from the insights
rollups; read at intake and by the gate (services.calibration_for)."""

from django.db import models
from django.utils import timezone

from .agents import Agent


class CalibrationBin(models.Model):
    """One confidence bin [low, high) of an agent's map, in one domain or ("") in all its
    domains. Only scopes with enough judged escalations (calibration.MIN_JUDGED) have rows,
    all ten bins each, so a row's presence means the map is in use."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+")
    # "" : every domain of the agent, used where a domain has too little history of its own.
    domain = models.CharField(max_length=64, blank=True)
    bin = models.PositiveSmallIntegerField()
    low = models.FloatField()
    high = models.FloatField()
    # Judged escalations whose stated confidence fell in the bin, and those where the
    # person took the recommended option.
    n = models.PositiveIntegerField(default=0)
    agreed = models.PositiveIntegerField(default=0)
    # Judged escalations in the whole scope (all bins): what "enough history" counts.
    judged = models.PositiveIntegerField(default=0)
    refreshed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "domain", "bin"], name="calibration_bin_key")
        ]

    def __str__(self) -> str:
        return f"agent {self.agent_id} {self.domain or '*'} [{self.low:g}, {self.high:g})"
