"""How every Handoff process logs: Django (settings.LOGGING), the Celery worker and beat
(which adopt settings.LOGGING through django-guid's Celery integration), uvicorn, and
gunicorn (deploy/gunicorn.conf.py). Standard library and the formatter only, so gunicorn's
master can import it before Django is set up.

LOG_FORMAT=plain (the default): one readable line per record.
LOG_FORMAT=json: one JSON object per line (python-json-logger), with `time` (ISO 8601,
UTC), `level`, `logger`, `message`, `request_id` (the X-Request-ID of the request being
served, or of the request whose commit enqueued the Celery task; null elsewhere), any
`extra` fields, and `exc_info` with the traceback.
"""

from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS

FORMATS = ("plain", "json")

# The request id comes from django-guid's context variable (set by its middleware, and in
# a task by its Celery integration).
REQUEST_ID_FILTER = {
    "()": "django_guid.log_filters.CorrelationId",
    "correlation_id_field": "request_id",
}
JSON_FORMATTER = {
    "()": "pythonjsonlogger.json.JsonFormatter",
    "fmt": ["levelname", "name", "message", "request_id"],
    "rename_fields": {"levelname": "level", "name": "logger"},
    "timestamp": "time",
    # uvicorn's copy of the message with terminal colours.
    "reserved_attrs": [*RESERVED_ATTRS, "color_message"],
}
PLAIN_FORMATTER = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}

# The servers' own loggers, which log through their own handlers unless told otherwise.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def check_format(value: str) -> str:
    value = (value or "plain").strip().lower()
    if value not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {value!r}")
    return value


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """The dictConfig of the Django processes (web and Celery)."""
    loggers: dict[str, dict[str, Any]] = {
        "django.request": {"level": "ERROR"},
        "httpx": {"level": "WARNING"},
        "celery": {"level": "WARNING"},
        # It logs every request's id at INFO.
        "django_guid": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # not a line per sign-in
    }
    if log_format == "json":
        # uvicorn's loggers have handlers of their own: in JSON mode they log through ours.
        for name in SERVER_LOGGERS:
            loggers[name] = {"handlers": ["console"], "level": "INFO", "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": REQUEST_ID_FILTER},
        "formatters": {"plain": PLAIN_FORMATTER, "json": JSON_FORMATTER},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": loggers,
    }


def gunicorn_config(*, level: str) -> dict:
    """gunicorn's logconfig_dict for LOG_FORMAT=json: its error and access logs as JSON
    (an access line's `message` is the usual combined-format line)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": REQUEST_ID_FILTER},
        "formatters": {"json": JSON_FORMATTER},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["request_id"],
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "gunicorn.error": {"handlers": ["console"], "level": level, "propagate": False},
            "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
        },
    }
