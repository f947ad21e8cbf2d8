from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import URLValidator

from people.services import machine_reviewer_ensure
from reviews.services import reviewer_token_issue


class Command(BaseCommand):
    help = (
        "Create a personal reviewer API token for USERNAME. The token is on the last line. "
        "With --machine, USERNAME is a machine reviewer account, created when missing."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--label", default="")
        parser.add_argument(
            "--machine", action="store_true",
            help="A machine reviewer (created or reused): its decisions are marked machine.",
        )
        parser.add_argument(
            "--webhook-url", default=None,
            help="With --machine: where first looks are offered (a signed POST).",
        )

    def handle(self, *args, username, label, machine, webhook_url, **options):
        if webhook_url is not None and not machine:
            raise CommandError("--webhook-url is for machine reviewers (--machine).")
        if machine:
            if webhook_url:
                try:
                    URLValidator(schemes=["http", "https"])(webhook_url)
                except ValidationError:
                    raise CommandError(f"Not an http(s) URL: {webhook_url!r}") from None
            user, secret = machine_reviewer_ensure(name=username, webhook_url=webhook_url)
            if secret:
                self.stderr.write(f"Webhook signing secret for {username} (shown once): {secret}")
        else:
            found = get_user_model().objects.filter(username=username, is_active=True).first()
            if found is None:
                raise CommandError(f"No active user {username!r}.")
            user = found
        token = reviewer_token_issue(user=user, label=label or ("machine" if machine else "manage.py"))
        self.stderr.write(f"Reviewer token for {username} (shown once):")
        self.stdout.write(token)
