import os
import random

from django.http import JsonResponse

from .models import Escalation

ROWS = int(os.environ.get("BENCH_BASE_ROWS", "20000"))


def escalation(request):
    """One indexed SELECT by a random primary key (the payload is not fetched)."""
    row = Escalation.objects.values("id", "status", "priority").get(pk=random.randint(1, ROWS))
    return JsonResponse(row)
