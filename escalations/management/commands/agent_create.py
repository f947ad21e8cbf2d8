import json
from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import URLValidator

from escalations import services
from escalations.models import Agent, Policy
from operations.egress import validate_outbound_url


class Command(BaseCommand):
    help = "Register an agent. Prints one JSON line with its token and signing secret (shown once)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--domain", default="default")
        parser.add_argument("--resume-url", default="")
        parser.add_argument("--budget", type=int, default=50, help="escalations per day")

    def handle(self, *args: Any, name: str, domain: str, resume_url: str, budget: int, **options: Any) -> None:
        if Agent.objects.filter(name=name).exists():
            raise CommandError(f"An agent named {name!r} already exists.")
        if not Policy.objects.filter(domain=domain).exists():
            known = ", ".join(Policy.objects.values_list("domain", flat=True))
            raise CommandError(f"Unknown domain {domain!r}; known: {known}")
        if resume_url:
            try:
                URLValidator(schemes=["http", "https"])(resume_url)
            except ValidationError:
                raise CommandError(f"--resume-url must be an http(s) URL, not {resume_url!r}") from None
            try:
                validate_outbound_url(resume_url)
            except ValidationError as exc:
                raise CommandError(f"--resume-url: {exc.messages[0]}") from None
        if budget < 0:
            raise CommandError("--budget must be 0 or more")
        new = services.agent_create(name=name, domain=domain, resume_url=resume_url, daily_budget=budget)
        self.stdout.write(
            json.dumps({"agent": new.agent.name, "token": new.token, "signing_secret": new.agent.signing_secret})
        )
