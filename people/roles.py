"""Who may do what on the people's side: Django groups `reviewer` and `manager`.

Reviewers triage and decide; managers also register agents, edit policies and read the
insights. Superusers may do everything. A signed-in user in neither group sees a page
that says which role they need (403), never a redirect loop to the login page.
"""

from functools import wraps

from django.core.exceptions import PermissionDenied

REVIEWER = "reviewer"
MANAGER = "manager"


def _groups(user) -> frozenset[str]:
    """The user's group names, read once per request (cached on the user object)."""
    cached = getattr(user, "_handoff_groups", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("name", flat=True))
        user._handoff_groups = cached
    return cached


def remember_groups(user, names) -> None:
    """For a caller that read the user's group names with the user (one query for both)."""
    user._handoff_groups = frozenset(names)


def is_reviewer(user) -> bool:
    if not (user and user.is_authenticated and user.is_active):
        return False
    return user.is_superuser or bool(_groups(user) & {REVIEWER, MANAGER})


def is_manager(user) -> bool:
    if not (user and user.is_authenticated and user.is_active):
        return False
    return user.is_superuser or MANAGER in _groups(user)


def is_machine(user) -> bool:
    """Whether the account is a machine reviewer (people.Profile.is_machine; no profile: a
    person). Read through the user's `profile` relation, so this module imports nothing."""
    if user is None or not getattr(user, "pk", None):
        return False
    profile = getattr(user, "profile", None)  # RelatedObjectDoesNotExist is an AttributeError
    return bool(profile is not None and profile.is_machine)


def _role_required(check, role: str):
    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not check(request.user):
                raise PermissionDenied(f"This page is for {role}s.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


reviewer_required = _role_required(is_reviewer, REVIEWER)
manager_required = _role_required(is_manager, MANAGER)
