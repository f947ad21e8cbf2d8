"""Reading settings from the environment: typed, failing loudly on a malformed value, and
from NAME_FILE when set (docker secrets). handoff_site.settings is written with these."""

import ipaddress
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from limits import parse_many


def env(name: str, default: str = "") -> str:
    """A setting from the environment, or from the file named by NAME_FILE (docker secrets)."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        return Path(file_name).read_text().strip()
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = env(name, "1" if default else "0").strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}")


def env_int(name: str, default: int) -> int:
    value = env(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def env_rate(name: str, default: str) -> str:
    """A rate limit in the `limits` notation ("1200/minute", "20/second;1200/minute"), or ""."""
    value = env(name, default).strip()
    try:
        parse_many(value) if value else None
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must look like 1200/minute or 20/second;1200/minute, not {value!r}"
        ) from None
    return value


def env_float(name: str, default: float) -> float:
    value = env(name, str(default))
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def env_networks(name: str, default: str = "") -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Comma-separated addresses or CIDR networks, e.g. 10.0.0.0/8,127.0.0.1."""
    try:
        return [ipaddress.ip_network(item, strict=False) for item in env_list(name, default)]
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None
