from django.db import models


class Escalation(models.Model):
    """An Escalation-like table (created and seeded by bench/run.py, not by migrations)."""

    created_at = models.DateTimeField()
    priority = models.IntegerField()
    status = models.CharField(max_length=16)
    payload = models.JSONField()

    class Meta:
        managed = False
        db_table = "bench_escalation"

    def __str__(self) -> str:
        return f"escalation {self.pk}"
