"""People: who may do what (roles), shared by the apps that serve people (reviews,
notifications, insights). Imports nothing of the rest of the project."""
