"""The project's blocking Redis clients: one per address and timeouts, shared by the process.

Each caller states its own timeouts (they differ on purpose: see the callers); callers that
state the same ones share one client, so one pool of connections (the wake-up's publish and
the live update after a decision, for one). redis-py's pool is thread-safe, and fork-safe on
its own: a child's first command finds the pool's pid is not its own and starts an empty
pool, and the parent's sockets it inherited are closed in the child without a shutdown, so
the parent's connections stay usable (redis.connection.ConnectionPool._checkpid). So a
client made before a fork serves the child too, and the cache needs no per-process key.

No lock: two threads that miss at once may make two clients, and only the first stored is
kept. A lock held across a fork would leave the child's cache locked for good.
"""

import redis

_clients: dict[tuple[str, float, float], redis.Redis] = {}


def redis_client(url: str, *, timeout: float, connect_timeout: float | None = None) -> redis.Redis:
    """The shared client of `url`: reads and writes wait `timeout` seconds at most, opening a
    connection `connect_timeout` (default: `timeout`, as redis-py does)."""
    key = (url, timeout, timeout if connect_timeout is None else connect_timeout)
    client = _clients.get(key)
    if client is None:
        made = redis.Redis.from_url(url, socket_timeout=key[1], socket_connect_timeout=key[2])
        client = _clients.setdefault(key, made)
    return client
