from . import permissions


def roles(request) -> dict:
    """`is_reviewer` and `is_manager` for the navigation; computed only when a template asks."""
    user = getattr(request, "user", None)
    return {
        "is_reviewer": lambda: permissions.is_reviewer(user),
        "is_manager": lambda: permissions.is_manager(user),
    }
