# Handoff's production image: one image for every role (web-http, web-async, worker, beat,
# migrate); docker-compose.yml picks the command. Runs as a non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 handoff \
 && useradd --system --uid 10001 --gid handoff --home-dir /app --shell /usr/sbin/nologin handoff

WORKDIR /app

# Dependencies first, in their own layer, from the lock file that every install path uses
# (exact versions, hashes checked): rebuilt only when the lock changes. The project's own
# packages are not installed; they run from /app.
COPY requirements/prod.lock requirements/prod.lock
RUN pip install --require-hashes -r requirements/prod.lock

COPY --chown=handoff:handoff . .
RUN mkdir -p /app/var && chown handoff:handoff /app/var

USER handoff

# Static files are collected at build time (hashed names + manifest, as DEBUG=0 serves
# them). The SECRET_KEY here is a throwaway that exists only in this build step.
RUN DEBUG=0 SECRET_KEY=build-only-dummy-key-not-used-at-runtime-0123456789abcdef \
    ALLOWED_HOSTS=build.invalid python manage.py collectstatic --noinput -v 0

EXPOSE 8000 8001

# The plain-HTTP server; docker-compose.yml overrides this for the other roles.
CMD ["gunicorn", "handoff_site.wsgi:application", "-c", "deploy/gunicorn.conf.py"]
