"""How the domain's facts travel, apart from the domain itself.

- events: live announcements after commit (the channel layer's sender loop)
- wakeup: wake-ups for long-polling agents (Redis pub/sub, or in-process)
- longpoll: the ASGI middleware that holds `?wait=N` requests with no database connection
- bodylimit: the API's body limit, held before Django reads a body
- middleware: every answer under /api/ is JSON; every error there is problem+json
- webhooks: the signed HTTP POST of a decision to the agent (and `verify`, for agents)
"""
