"""People: accounts and who may do what. roles.py (the groups, used by every app that
serves people), the Members page (invitations, roles, machine reviewers), the profile.
Imports nothing of the rest of the project."""
