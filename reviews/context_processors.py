from people.roles import is_manager, is_reviewer


def roles(request) -> dict:
    """`is_reviewer` and `is_manager` for the navigation; computed only when a template asks."""
    user = getattr(request, "user", None)
    return {
        "is_reviewer": lambda: is_reviewer(user),
        "is_manager": lambda: is_manager(user),
    }
