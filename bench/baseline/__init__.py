"""Baselines for bench/run.py: a bare Django project (one PK-SELECT view) and a no-op Celery app.

Deliberately not part of the app: its own settings, its own database (handoff_bench_base),
the default `startproject` middleware, nothing else.
"""
