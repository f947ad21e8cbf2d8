#!/usr/bin/env python3
"""Refresh docs/screenshots/ from the demo data: `make screenshots`.

The queue, an escalation and insights at 1,440 px; the escalation in the dark theme; the queue
and the escalation on a phone (390 px).

A fresh embedded Handoff in a temporary folder (SQLite, in-memory layers: the environment's
DATABASE_URL and REDIS_URL are left out, so no database of yours is touched), migrated and
seeded with `manage.py seed_demo`, served by scripts/run.py on a free port of 127.0.0.1;
Debian's chromium (through Playwright) signs in as the demo reviewer and takes the pictures.

Usage: python scripts/screenshots.py [--out docs/screenshots] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
LOGIN = ("demo", "handoff-demo")  # seed_demo's reviewer
DESKTOP = {"width": 1440, "height": 900}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
SHOTS = ("queue.png", "escalation.png", "insights.png", "escalation-dark.png", "queue-phone.png", "escalation-phone.png")
ALL_CHARTS_DRAWN = (
    "[...document.querySelectorAll('[data-figure]')].every(e => e.querySelector('.main-svg'))"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(var_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(HANDOFF_VAR_DIR=var_dir, DEBUG="1", DJANGO_SETTINGS_MODULE="handoff_site.settings")
    return env


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def wait_until_serving(url: str, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own http URL
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise SystemExit(f"the server did not answer {url} within {timeout:.0f} s")


def sign_in(browser, base: str, **options):
    """A page of a new browser context (the options: viewport, colour scheme, phone), signed
    in as the demo reviewer, on the queue with its socket open."""
    page = browser.new_page(bypass_csp=True, **options)
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", LOGIN[0])
    page.fill("input[name=password]", LOGIN[1])
    page.click("button[type=submit]")
    page.wait_for_selector("table.queue")
    settle(page)
    return page


def settle(page) -> None:
    """The socket is open and htmx's requests on arrival are over (an in-flight form's submit
    button is dimmed)."""
    page.wait_for_function("document.body.dataset.live === 'live'")
    page.wait_for_function("!document.querySelector('.htmx-request')")


def open_escalation(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#decision-panel")
    settle(page)


def take(base: str, out: Path, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = sign_in(browser, base, viewport=DESKTOP)
            page.screenshot(path=str(out / "queue.png"), full_page=True)
            page.click("text=Update the 14 callers")
            open_escalation(page, page.url)
            escalation = page.url
            page.screenshot(path=str(out / "escalation.png"))
            page.goto(f"{base}/insights/")
            page.wait_for_function(ALL_CHARTS_DRAWN)
            page.screenshot(path=str(out / "insights.png"), full_page=True)

            # the dark theme (the system's preference), the same escalation
            dark = sign_in(browser, base, viewport=DESKTOP, color_scheme="dark")
            open_escalation(dark, escalation)
            dark.screenshot(path=str(out / "escalation-dark.png"))

            # a phone: the queue's cards, and the escalation with its action bar
            phone = sign_in(browser, base, **PHONE)
            phone.screenshot(path=str(out / "queue-phone.png"))
            open_escalation(phone, escalation)
            phone.screenshot(path=str(out / "escalation-phone.png"))
        finally:
            browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    if not os.path.exists(args.chromium):
        raise SystemExit(f"no chromium at {args.chromium} (apt-get install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="handoff-screenshots-") as var_dir:
        env = environment(var_dir)
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "seed_demo")
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "scripts/run.py", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, start_new_session=True,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_serving(f"{base}/healthz", server)
            take(base, args.out, args.chromium)
        finally:
            os.killpg(server.pid, signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
    print(f"screenshots written to {args.out}: {', '.join(SHOTS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
