from django.db import migrations


def create_groups(apps, schema_editor):
    """The two roles, and every existing active user a reviewer (they all were before)."""
    Group = apps.get_model("auth", "Group")
    User = apps.get_model("auth", "User")
    reviewer, _ = Group.objects.get_or_create(name="reviewer")
    Group.objects.get_or_create(name="manager")
    for user in User.objects.filter(is_active=True, is_superuser=False):
        user.groups.add(reviewer)


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_groups, migrations.RunPython.noop)]
