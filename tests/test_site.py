"""The site around the app: health, static files under the ASGI server, the login page."""

import httpx
import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_asgi_server_serves_static_files_and_pages(live_server_asgi):
    css = httpx.get(f"{live_server_asgi}/static/css/handoff.css")
    assert css.status_code == 200
    assert "text/css" in css.headers["content-type"]
    assert httpx.get(f"{live_server_asgi}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{live_server_asgi}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database"]["status"] == "ok"
    assert httpx.get(f"{live_server_asgi}/metrics").status_code == 200
    login = httpx.get(f"{live_server_asgi}/", follow_redirects=True)
    assert login.status_code == 200
    assert "/accounts/login/" in str(login.url)


def test_every_template_comment_closes_on_its_own_line():
    """Django's {# #} comment is one line: one that runs on is printed on the page (base.html's
    was, above every page). Longer notes use {% comment %}."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    open_comments = [
        f"{path.relative_to(root)}:{number}"
        for path in sorted(root.glob("**/templates/**/*.html"))
        if ".venv" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if line.count("{#") > line.count("#}")
    ]
    assert open_comments == []
