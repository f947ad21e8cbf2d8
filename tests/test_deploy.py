"""The deployment files and the settings' two shapes, checked the way an operator meets them:
docker-compose's own parser, and Django started in a fresh process with a chosen environment."""

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need

ROOT = Path(__file__).resolve().parent.parent

# Only what an operator must set: the secure defaults need nothing else.
PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(64),
    "ALLOWED_HOSTS": "handoff.example.com",
}


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh shell: no Handoff settings, no pytest, no DJANGO_*."""
    env = {
        key: os.environ[key]
        for key in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
        if key in os.environ
    }
    env.update(extra)
    return env


def run(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "manage.py", *args], env=env)


PRINT_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
db = settings.DATABASES["default"]
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "ENGINE": db["ENGINE"],
    "NAME": str(db["NAME"]),
    "OPTIONS": {k: str(v) for k, v in db.get("OPTIONS", {}).items()},
    "CHANNEL_LAYER": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "BROKER": settings.CELERY_BROKER_URL,
    "EMBEDDED_WORKER": settings.CELERY_EMBEDDED_WORKER,
    "CACHE": settings.CACHES["default"]["BACKEND"],
}))
"""


def print_settings(env: dict[str, str]) -> dict:
    result = run(
        [sys.executable, "-c", PRINT_SETTINGS],
        env={**env, "DJANGO_SETTINGS_MODULE": "handoff_site.settings"},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- docker-compose


def test_compose_file_is_accepted_by_docker_compose():
    need(bool(shutil.which("docker-compose")), "docker-compose")
    env = {**os.environ, "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "handoff.example.com"}
    result = run(["docker-compose", "-f", "docker-compose.yml", "config", "-q"], env=env)
    assert result.returncode == 0, result.stderr


def test_compose_has_the_production_shape():
    need(bool(shutil.which("docker-compose")), "docker-compose")
    env = {**os.environ, "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "handoff.example.com"}
    result = run(["docker-compose", "-f", "docker-compose.yml", "config"], env=env)
    assert result.returncode == 0, result.stderr
    import yaml  # docker-compose itself depends on PyYAML; only its output is parsed here

    services = yaml.safe_load(result.stdout)["services"]
    assert {
        "postgres",
        "redis",
        "migrate",
        "web-http",
        "web-async",
        "proxy",
        "worker",
        "beat",
    } <= set(services)
    for name in ("postgres", "redis", "web-http", "web-async"):
        assert services[name].get("healthcheck"), f"{name} has no health check"
    for name in ("web-http", "web-async", "worker", "beat"):
        assert (
            services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        )
        environment = services[name]["environment"]
        for key in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS"):
            assert environment.get(key), f"{name} lacks {key}"
    for name in ("web-http", "web-async", "worker", "beat"):  # supervised: back when they exit
        assert services[name].get("restart") in ("always", "unless-stopped"), name
    assert "gunicorn" in services["web-http"]["command"]
    assert "uvicorn" in services["web-async"]["command"]


def test_compose_refuses_to_start_without_a_secret_key():
    need(bool(shutil.which("docker-compose")), "docker-compose")
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "ALLOWED_HOSTS")}
    result = run(["docker-compose", "-f", "docker-compose.yml", "config", "-q"], env=env)
    if (ROOT / ".env").exists():
        pytest.skip("a local .env provides the settings")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_nginx_routes_long_polls_and_websockets_to_the_asgi_server():
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "map $arg_wait $api_upstream" in conf
    assert "proxy_pass http://$api_upstream;" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    mcp = conf.split("location = /mcp {", 1)[1].split("}", 1)[0]  # MCP tools: uvicorn, unbuffered
    assert "proxy_pass http://web_async;" in mcp
    assert "proxy_buffering off;" in mcp


def test_the_proxy_writes_the_access_log_as_json_with_the_request_id():
    """web-http writes none by default (deploy/gunicorn.conf.py): this is the deployment's."""
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "    access_log /dev/stdout handoff;" in conf
    declared = conf.split("log_format handoff escape=json", 1)[1].split(";", 1)[0]
    line = "".join(re.findall(r"'([^']*)'", declared))
    assert '"request_id":"$handoff_request_id"' in line  # the id the app logs (X-Request-ID)
    # Every variable given a value as nginx would print it, the line is one JSON object.
    sample = re.sub(r"\$(status|body_bytes_sent|request_time)\b", "1", line)
    record = json.loads(re.sub(r"\$[a-z_]+", "x", sample))
    assert {"time", "request_id", "method", "uri", "status", "request_time", "upstream_time"} <= set(record)


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS"])
def test_production_refuses_to_start_without(missing):
    env = clean_env(**PRODUCTION_ENV)
    del env[missing]
    result = manage("check", env=env)
    assert result.returncode != 0
    assert f"{missing} must be set when DEBUG is off" in result.stderr


def test_production_with_a_database_url_and_no_secret_key_refuses_to_start():
    # DEBUG defaults off with DATABASE_URL: the most likely way to forget the secret.
    env = clean_env(
        DATABASE_URL="postgres://nobody@127.0.0.1:1/none", ALLOWED_HOSTS="handoff.example.com"
    )
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_check_deploy_is_clean_with_production_settings():
    extra = {key: os.environ[key] for key in ("DATABASE_URL", "REDIS_URL") if os.environ.get(key)}
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", env=clean_env(**PRODUCTION_ENV, **extra)
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_embedded_mode_with_no_environment_uses_sqlite_under_var():
    shown = print_settings(clean_env())
    assert shown["DEBUG"] is True
    assert shown["ENGINE"] == "django.db.backends.sqlite3"
    assert Path(shown["NAME"]) == ROOT / "var" / "handoff.sqlite3"
    assert "journal_mode=WAL" in shown["OPTIONS"]["init_command"]
    assert shown["CHANNEL_LAYER"] == "channels.layers.InMemoryChannelLayer"
    assert shown["BROKER"] == "memory://localhost/"
    assert shown["EMBEDDED_WORKER"] is True
    assert shown["CACHE"].endswith("LocMemCache")


def test_production_mode_with_database_and_redis_urls():
    shown = print_settings(
        clean_env(
            DATABASE_URL="postgres://handoff@db.invalid:5432/handoff",
            REDIS_URL="redis://redis.invalid:6379/0",
            SECRET_KEY=secrets.token_urlsafe(64),
            ALLOWED_HOSTS="handoff.example.com",
        )
    )
    assert shown["DEBUG"] is False
    assert shown["ENGINE"] == "handoff_site.postgres"  # Django's, with a cheaper pool check
    assert "pool" in shown["OPTIONS"]
    assert shown["CHANNEL_LAYER"] == "channels_redis.core.RedisChannelLayer"
    assert shown["BROKER"] == "redis://redis.invalid:6379/0"
    assert shown["EMBEDDED_WORKER"] is False
    assert shown["CACHE"].endswith("RedisCache")


def test_env_example_lists_every_setting():
    """Every variable settings.py reads is documented in .env.example."""
    import re

    source = (ROOT / "handoff_site" / "settings.py").read_text()
    read = set(re.findall(r'env(?:_[a-z]+)?\(\s*"([A-Z][A-Z0-9_]*)"', source))
    read |= set(re.findall(r'os\.environ\.get\("([A-Z][A-Z0-9_]*)"', source))
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    assert read, "found no settings read from the environment"
    assert read - documented == set()
