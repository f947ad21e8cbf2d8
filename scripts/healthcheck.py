#!/usr/bin/env python3
"""Container health check: GET a probe of this container's server; exit 0 only on 200.

    python scripts/healthcheck.py [PORT] [PATH]   (default 8000 /readyz)

/readyz answers 200 when the process reaches PostgreSQL and Redis, 503 naming what failed
(printed here); /healthz only says the process answers. Both are served ahead of Django's
host check and HTTPS redirect, so no Host or X-Forwarded-Proto header is needed. Standard
library only; no curl in the image.
"""

import http.client
import sys


def main() -> int:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    path = sys.argv[2] if len(sys.argv) > 2 else "/readyz"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        status, body = response.status, response.read(2000).decode(errors="replace")
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if status != 200:
        print(f"unhealthy: {path} answered {status}: {body}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
