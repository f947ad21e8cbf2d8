from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from reviews.services import reviewer_token_issue


class Command(BaseCommand):
    help = "Create a personal reviewer API token for USERNAME. The token is on the last line."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--label", default="")

    def handle(self, *args, username, label, **options):
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active user {username!r}.")
        token = reviewer_token_issue(user=user, label=label or "manage.py")
        self.stderr.write(f"Reviewer token for {username} (shown once):")
        self.stdout.write(token)
