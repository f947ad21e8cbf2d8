"""The one settings module. Every knob comes from the environment (see .env.example).

Two shapes, chosen by the environment alone:
- embedded (no DATABASE_URL / REDIS_URL): SQLite in WAL mode under var/, an in-memory
  channel layer, and Celery running the same tasks inside the web process on an
  in-memory transport (periodic jobs too);
- production (DATABASE_URL and REDIS_URL): PostgreSQL through psycopg's pool,
  channels-redis, and Celery on Redis with separate worker and beat processes.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from django_guid.integrations import CeleryIntegration

from handoff_site import logs
from handoff_site.environment import (
    env,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_rate,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("HANDOFF_VAR_DIR", BASE_DIR / "var"))


# ---------------------------------------------------------------- mode
DATABASE_URL = env("DATABASE_URL")
REDIS_URL = env("REDIS_URL")
EMBEDDED = not REDIS_URL
DEBUG = env_bool("DEBUG", default=not DATABASE_URL)
TESTING = False  # handoff_site.settings_test, the test suite's settings, says True

# ---------------------------------------------------------------- security
SECRET_KEY = env("SECRET_KEY")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
if not DEBUG:
    if not SECRET_KEY:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off")
SECRET_KEY = SECRET_KEY or "embedded-insecure-key-only-for-local-use-0123456789abcdef"
ALLOWED_HOSTS = ALLOWED_HOSTS or ["127.0.0.1", "localhost", "[::1]", "testserver"]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# Where reviewers reach the dashboard; used in the `url` of escalations and in webhooks.
HOST = env("HOST", "127.0.0.1")
PORT = env_int("PORT", 8000)
PUBLIC_URL = env("PUBLIC_URL", f"http://{HOST}:{PORT}").rstrip("/")

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    # Secure by default (`check --deploy` is clean with no SECURE_* set): http is redirected
    # to https, and browsers are told to use https for a year (HSTS, sent over https only;
    # `preload` matters only if the domain's owner submits it to the browsers' list).
    # docker-compose's plain-http demo on localhost turns the redirect and HSTS off, and so
    # do the tests (their servers speak plain http on 127.0.0.1: settings_test.py).
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=True)
    SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Pages run only the scripts and styles served from static/: no inline script, no eval, no
# third-party origin (django-csp; JSON answers go without it, see handoff_site.middleware).
# 'self' covers the dashboard's own websockets (ws/wss to the same host and port).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# ---------------------------------------------------------------- apps
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_htmx",
    "django_filters",
    "template_partials",
    "ninja",  # /api/v1/docs from its own static files (no CDN)
    "axes",
    "csp",
    "people",
    "escalations",
    "reviews",
    "insights",
    "notifications",
    "operations",
    "demo",  # seed_demo and seed_history: the data of `make run` and the screenshots
    "django_guid",
]

MIDDLEWARE = [
    # /healthz, /readyz and /metrics answer here, before everything below.
    "operations.middleware.operations_middleware",
    # The request id (X-Request-ID, or a new one) in every log line and in Celery tasks.
    "django_guid.middleware.guid_middleware",
    "escalations.transport.middleware.ApiProblemMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Page views' statements bounded by DB_STATEMENT_TIMEOUT (PostgreSQL): before everything
    # that may query (the session, the signed-in user).
    "handoff_site.middleware.StatementTimeoutMiddleware",
    "handoff_site.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "handoff_site.middleware.AuthenticationMiddleware",
    "handoff_site.middleware.LoginRequiredMiddleware",
    "handoff_site.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "handoff_site.middleware.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

ROOT_URLCONF = "handoff_site.urls"
WSGI_APPLICATION = "handoff_site.wsgi.application"
ASGI_APPLICATION = "handoff_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "reviews.context_processors.roles",
                "people.context_processors.sign_in",
            ],
        },
    }
]

# ---------------------------------------------------------------- database
if DATABASE_URL:
    # A database that goes away mid-run costs 503s (handoff_site.outage), and its return is
    # noticed on its own: the pool checks a connection before lending it (below), so those a
    # restart broke are replaced, never handed to a request (CONN_HEALTH_CHECKS: with the pool,
    # handoff_site.postgres's check; off, the pool would lend them unchecked).
    DATABASES = {
        "default": dj_database_url.parse(DATABASE_URL, conn_max_age=0, conn_health_checks=True)
    }
    if env("TEST_DATABASE_NAME", ""):  # so two test runs on one server do not collide
        DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", "")}
    postgres_options = DATABASES["default"].setdefault("OPTIONS", {})
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # An unreachable server fails a connection attempt in seconds, not TCP's minutes.
        postgres_options.setdefault("connect_timeout", 5)
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
        "DB_POOL", default=True
    ):
        # psycopg's pool, never CONN_MAX_AGE: it is safe under ASGI as well as WSGI. Its
        # backend is Django's with the pool's check before lending a connection: an empty
        # query only when the idle connection's socket has something to read (PostgreSQL's
        # goodbye), not a round trip per request (handoff_site.postgres).
        DATABASES["default"]["ENGINE"] = "handoff_site.postgres"
        # Server-side binding lets PostgreSQL prepare the hot statements once per pooled
        # connection instead of planning every query (measured: a joined read 1.17 -> 0.50 ms).
        server_side_binding = env_bool("DB_SERVER_SIDE_BINDING", default=True)
        postgres_options.update(
            {
                "server_side_binding": server_side_binding,
                "prepare_threshold": 2 if server_side_binding else None,
                "pool": {
                    "min_size": env_int("DB_POOL_MIN", 1),
                    "max_size": env_int("DB_POOL_MAX", 10),
                    # How long a request waits for a connection before it answers 503.
                    "timeout": env_int("DB_POOL_TIMEOUT", 3),
                    # Reconnection gives up after 2 s and the next request starts afresh, so
                    # the pool reconnects within a second or two of the database's return,
                    # not after a backoff grown (1, 2, 4, 8 s...) through the whole outage.
                    "reconnect_timeout": 2,
                },
            }
        )
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "handoff.sqlite3"),
            "OPTIONS": {
                # WAL lets readers run beside the one writer; IMMEDIATE takes the write
                # lock at BEGIN so two writers queue instead of failing mid-transaction.
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
                ),
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            "TEST": {"NAME": str(VAR_DIR / "test-handoff.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# PostgreSQL's statement_timeout for the statements of a page view, in seconds (0: none):
# a statement past it is cancelled and the page answers 503 (handoff_site.middleware).
DB_STATEMENT_TIMEOUT = env_float("DB_STATEMENT_TIMEOUT", 15)

# ---------------------------------------------------------------- cache / channels
CHANNEL_LAYER_SOCKET_TIMEOUT = 15  # seconds; more than channels-redis's 5 s blocking read
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "handoff",
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # Explicit socket timeouts, so no redis-py default decides them: channels-redis
                # blocks 5 s on its read of an idle channel, and a read timeout at or under that
                # drops every idle websocket (redis-py 8's default is 5 s: issue 9). Longer,
                # but finite, so a Redis that hangs is still noticed; connecting fails fast, so
                # a socket opened in an outage is refused at once (reviews.consumers).
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT,
                        "socket_connect_timeout": 2,
                    }
                ],
                "prefix": env("CHANNELS_PREFIX", "handoff"),
                "capacity": 500,
                "expiry": 30,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# ---------------------------------------------------------------- celery
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# At least once: a task is acknowledged when it has run, and a killed worker's task goes
# back to the queue. Tasks are idempotent (they claim their row by compare-and-swap).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redeliver an unacknowledged task after an hour; fail fast when Redis does not answer, so
# an outage never hangs a request (its enqueue is logged and the sweep sends it later). The
# read timeout outlasts kombu's 1 s blocking read of the queue; pooled connections idle for
# 25 s are pinged before use, so one left dead by a Redis restart is replaced, not used
# (explicit, like the timeouts, so a kombu or redis-py default cannot change them).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "health_check_interval": 25,
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    # Often (one indexed query): a row whose whole worker died goes out one lease + 5 s later.
    "sweep-deliveries": {"task": "escalations.tasks.sweep_deliveries_task", "schedule": 5.0},
    "apply-timeouts": {"task": "escalations.tasks.apply_timeouts_task", "schedule": 15.0},
    "expire-claims": {"task": "escalations.tasks.expire_claims_task", "schedule": 30.0},
    "expire-decisions": {"task": "escalations.tasks.expire_decisions_task", "schedule": 30.0},
    "refresh-priorities": {"task": "escalations.tasks.refresh_priorities_task", "schedule": 60.0},
    "advance-levels": {"task": "escalations.tasks.advance_levels_task", "schedule": 30.0},
    "sweep-notifications": {
        "task": "notifications.tasks.sweep_notifications_task",
        "schedule": 30.0,
    },
    # Slack messages behind their escalation's closed status (a broker outage at the
    # decision, a decision that expired since): one partial-index query when none are.
    "sweep-slack-messages": {"task": "notifications.tasks.sweep_slack_task", "schedule": 60.0},
    "refresh-insights": {"task": "insights.tasks.refresh_insights_task", "schedule": 300.0},
    "purge-idempotency-keys": {
        "task": "escalations.tasks.purge_idempotency_keys_task",
        "schedule": 3600.0,
    },
    # Retention (RETENTION_DAYS; returns at once when it is 0, the default).
    "purge-expired-escalations": {"task": "operations.tasks.purge_expired_task", "schedule": 900.0},
}
# In embedded mode the web process runs a worker and beat in threads (handoff_site.embedded).
CELERY_EMBEDDED_WORKER = env_bool("CELERY_EMBEDDED_WORKER", default=EMBEDDED)

# ---------------------------------------------------------------- handoff
# Webhooks: timeout per attempt, and how long a failing delivery keeps retrying.
WEBHOOK_TIMEOUT_SECONDS = float(env("WEBHOOK_TIMEOUT_SECONDS", "10"))
WEBHOOK_RETRY_FOR_SECONDS = env_int("WEBHOOK_RETRY_FOR_SECONDS", 25 * 3600)
WEBHOOK_BACKOFF_BASE_SECONDS = float(env("WEBHOOK_BACKOFF_BASE_SECONDS", "2"))
WEBHOOK_BACKOFF_MAX_SECONDS = float(env("WEBHOOK_BACKOFF_MAX_SECONDS", "3600"))
CLAIM_LEASE_SECONDS = env_int("CLAIM_LEASE_SECONDS", 15 * 60)
IDEMPOTENCY_RETENTION_SECONDS = env_int("IDEMPOTENCY_RETENTION_SECONDS", 24 * 3600)
API_MAX_BODY_BYTES = 1024 * 1024
LONG_POLL_MAX_SECONDS = 60

# ---------------------------------------------------------------- notifications
# E-mail goes through Django's mail backends: printed to the console in the embedded mode,
# SMTP otherwise. Slack and generic webhooks reuse the WEBHOOK_* timeouts and backoff.
# (An empty value counts as unset here, so docker-compose can pass them all through.)
EMAIL_BACKEND = env("EMAIL_BACKEND") or (
    "django.core.mail.backends.console.EmailBackend"
    if EMBEDDED
    else "django.core.mail.backends.smtp.EmailBackend"
)
EMAIL_HOST = env("EMAIL_HOST") or "localhost"
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL") or "Handoff <handoff@localhost>"
# How long a failing notification keeps retrying (transient failures only; the outboxes'
# one give-up rule, escalations.services.outbox, as WEBHOOK_RETRY_FOR_SECONDS for deliveries).
NOTIFICATION_RETRY_FOR_SECONDS = env_int("NOTIFICATION_RETRY_FOR_SECONDS", 3600)
# Deciding from the message itself (README, "Notifications"). Slack: a Slack app's bot token
# (chat:write, users:read, users:read.email) posts Block Kit messages with decide buttons, and
# its signing secret verifies the clicks Slack posts to /integrations/slack/interactivity.
# SLACK_API_URL is Slack's Web API (the tests point it at a local stand-in).
SLACK_BOT_TOKEN = env("SLACK_BOT_TOKEN")
SLACK_SIGNING_SECRET = env("SLACK_SIGNING_SECRET")
SLACK_API_URL = env("SLACK_API_URL") or "https://slack.com/api/"
# E-mail action links: signed, single use, valid this long after the message was sent.
ACTION_LINK_MAX_AGE_SECONDS = env_int("ACTION_LINK_MAX_AGE_SECONDS", 24 * 3600)
# Web push (VAPID): the key pair as base64url (public: the uncompressed point; private: the
# raw 32-byte scalar), e.g. from `manage.py vapid_keys`; no keys, no push channel.
VAPID_PUBLIC_KEY = env("VAPID_PUBLIC_KEY")
VAPID_PRIVATE_KEY = env("VAPID_PRIVATE_KEY")
VAPID_SUBJECT = env("VAPID_SUBJECT") or "mailto:handoff@localhost"

# ---------------------------------------------------------------- one attempt of the outboxes
# One attempt at sending an outbox row (a decision's webhook, a notification) is bounded by
# the longest send timeout: its task is interrupted 2 s past it (Celery's soft time limit:
# the attempt is recorded as failed and retried) and its worker child killed 4 s past it.
# The lease a claim takes lasts 1 s longer still, so a live worker never loses its lease,
# and a row whose worker died mid-send is sent again as soon as the lease lapses (15 s with
# the default 10 s timeouts). The sweep's "already enqueued" mark lasts one lease too.
OUTBOX_SEND_TIMEOUT_SECONDS = max(WEBHOOK_TIMEOUT_SECONDS, float(EMAIL_TIMEOUT))
OUTBOX_SOFT_TIME_LIMIT = OUTBOX_SEND_TIMEOUT_SECONDS + 2
OUTBOX_TIME_LIMIT = OUTBOX_SEND_TIMEOUT_SECONDS + 4
OUTBOX_LEASE_SECONDS = OUTBOX_SEND_TIMEOUT_SECONDS + 5

# ---------------------------------------------------------------- abuse limits
# API rate limits (handoff_site.ratelimit), in the `limits` notation: "1200/minute",
# "20/second;1200/minute" (all must hold); empty turns that limit off. Per agent token, per
# reviewer token (/api/v1/review/) and per client address; every /api/ call counts.
RATE_LIMIT_AGENT = env_rate("RATE_LIMIT_AGENT", "1200/minute")
RATE_LIMIT_REVIEWER = env_rate("RATE_LIMIT_REVIEWER", "600/minute")
RATE_LIMIT_ADDRESS = env_rate("RATE_LIMIT_ADDRESS", "3000/minute")
# Resume URLs, notification webhooks and Slack URLs never reach link-local or cloud-metadata
# addresses; loopback and private ones only with this on (default: on in the embedded mode,
# with DEBUG and in tests, so local agents work; off in production). operations.egress.
OUTBOUND_ALLOW_PRIVATE = env_bool("OUTBOUND_ALLOW_PRIVATE", default=EMBEDDED or DEBUG)
# Proxies in front of the app that append to X-Forwarded-For (nginx in docker-compose: 1).
# 0: the TCP peer is the client. Rate limits and sign-in throttling count per this address.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

# ---------------------------------------------------------------- auth, i18n, static
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# Sign-in throttling (django-axes): after SIGN_IN_FAILURE_LIMIT failed sign-ins for one
# account, or from one address (handoff_site.ratelimit's client address), sign-in is
# refused for SIGN_IN_LOCKOUT_MINUTES; the login page says so (handoff_site.signin).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("SIGN_IN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("SIGN_IN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each counted on its own
AXES_CLIENT_IP_CALLABLE = "handoff_site.ratelimit.request_ip"
AXES_LOCKOUT_CALLABLE = "handoff_site.signin.locked_out"
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # failures are recorded; successful sign-ins need no row
AXES_VERBOSE = False

# Sign-in through an OpenID Connect provider (people.oidc, mozilla-django-oidc): on when
# OIDC_RP_CLIENT_ID is set, beside the password sign-in. The provider's endpoints are given
# one by one (its /.well-known/openid-configuration lists them). Roles come from a groups
# claim on every sign-in: any of OIDC_MANAGER_GROUPS makes a manager, any of
# OIDC_REVIEWER_GROUPS a reviewer.
OIDC_RP_CLIENT_ID = env("OIDC_RP_CLIENT_ID")
OIDC_RP_CLIENT_SECRET = env("OIDC_RP_CLIENT_SECRET")
OIDC_OP_AUTHORIZATION_ENDPOINT = env("OIDC_OP_AUTHORIZATION_ENDPOINT")
OIDC_OP_TOKEN_ENDPOINT = env("OIDC_OP_TOKEN_ENDPOINT")
OIDC_OP_USER_ENDPOINT = env("OIDC_OP_USER_ENDPOINT")
OIDC_OP_JWKS_ENDPOINT = env("OIDC_OP_JWKS_ENDPOINT")
OIDC_RP_SIGN_ALGO = env("OIDC_RP_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = env("OIDC_RP_SCOPES", "openid email profile")
OIDC_PROVIDER_NAME = env("OIDC_PROVIDER_NAME", "single sign-on")
OIDC_GROUPS_CLAIM = env("OIDC_GROUPS_CLAIM", "groups")
OIDC_REVIEWER_GROUPS = env_list("OIDC_REVIEWER_GROUPS", "reviewer")
OIDC_MANAGER_GROUPS = env_list("OIDC_MANAGER_GROUPS", "manager")
OIDC_TIMEOUT = env_int("OIDC_TIMEOUT", 10)
OIDC_AUTHENTICATION_CALLBACK_URL = "people:oidc_callback"
LOGIN_REDIRECT_URL_FAILURE = "/accounts/login/?sso=failed"
if OIDC_RP_CLIENT_ID:
    missing = [
        name
        for name in ("OIDC_RP_CLIENT_SECRET", "OIDC_OP_AUTHORIZATION_ENDPOINT", "OIDC_OP_TOKEN_ENDPOINT",
                     "OIDC_OP_USER_ENDPOINT", "OIDC_OP_JWKS_ENDPOINT")
        if not globals()[name]
    ]
    if missing:
        raise ImproperlyConfigured(f"OIDC_RP_CLIENT_ID is set: set {', '.join(missing)} too")
    AUTHENTICATION_BACKENDS.append("people.oidc.HandoffOIDCBackend")

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "reviews:queue"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "insights.staticfiles.PlotlyFinder",  # plotly.js from the installed plotly package
]
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
    },
}

# ---------------------------------------------------------------- operating
# /metrics: open to the bearer token METRICS_TOKEN, and without it to connections from
# METRICS_ALLOWED_IPS (addresses or CIDR networks; by default this host only).
METRICS_TOKEN = env("METRICS_TOKEN")
METRICS_ALLOWED_NETWORKS = env_networks("METRICS_ALLOWED_IPS", "127.0.0.1,::1")
# /readyz: how long each check (database, Redis) may take before it counts as failed.
READYZ_TIMEOUT_SECONDS = env_float("READYZ_TIMEOUT_SECONDS", 2.0)
# Closed escalations (decided, resumed, withdrawn) unchanged for this many days are purged
# with their timeline, deliveries and decision; the insights keep their figures. 0: keep.
RETENTION_DAYS = env_int("RETENTION_DAYS", 0)
if RETENTION_DAYS < 0:
    raise ImproperlyConfigured("RETENTION_DAYS must be 0 (keep everything) or more")

try:
    LOG_FORMAT = logs.check_format(env("LOG_FORMAT", "plain"))
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
LOGGING = logs.logging_config(log_format=LOG_FORMAT, level=env("LOG_LEVEL", "INFO"))
DJANGO_GUID = {
    # nginx sends its $request_id here (deploy/nginx.conf); answers carry it back.
    "GUID_HEADER_NAME": "X-Request-ID",
    # A task enqueued by a request logs with that request's id; the worker and beat log
    # through LOGGING above (not Celery's own handlers; their -l flag sets no level then).
    "INTEGRATIONS": [CeleryIntegration(use_django_logging=True)],
}
