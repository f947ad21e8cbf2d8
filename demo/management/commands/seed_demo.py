from django.core.management.base import BaseCommand
from django.utils import timezone

from demo.seed import seed_demo


class Command(BaseCommand):
    help = "Load demo reviewers, agents and escalations, then the insights history (idempotent)."

    def handle(self, *args, **options):
        seed_demo(now=timezone.now(), say=self.stdout.write)
