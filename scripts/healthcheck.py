#!/usr/bin/env python3
"""Container health check: GET /healthz on this container's server; exit 0 only on 200.

Sends a Host header Django accepts (the first concrete name in ALLOWED_HOSTS) and
`X-Forwarded-Proto: https`, so neither ALLOWED_HOSTS nor SECURE_SSL_REDIRECT turn the
probe into a 400 or a redirect. Standard library only; no curl in the image.

Usage: python scripts/healthcheck.py [PORT]   (default 8000)
"""

import http.client
import os
import sys


def probe_host() -> str:
    for host in os.environ.get("ALLOWED_HOSTS", "").split(","):
        host = host.strip()
        if host and host != "*":
            return host.lstrip(".") or "localhost"
    return "localhost"


def main() -> int:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(
            "GET", "/healthz", headers={"Host": probe_host(), "X-Forwarded-Proto": "https"}
        )
        status = conn.getresponse().status
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if status != 200:
        print(f"unhealthy: /healthz answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
