"""Web push to the reviewers' browsers (the installable web app): the standard Web Push
protocol (RFC 8030, aes128gcm payload encryption, VAPID) through pywebpush, with the key
pair from settings. A notification's push row goes to every browser the person subscribed;
a subscription the push service says is gone (404, 410) is forgotten.

Subscribing and forgetting are this module's writes (the settings page calls them).
"""

import json
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from pywebpush import WebPushException, webpush

from operations.egress import validate_outbound_url

from .models import Notification, PushSubscription

log = logging.getLogger(__name__)

GONE = (404, 410)
BODY_CHARS = 240
TTL_SECONDS = 24 * 3600


def configured() -> bool:
    return bool(settings.VAPID_PUBLIC_KEY and settings.VAPID_PRIVATE_KEY)


@dataclass(frozen=True)
class Sent:
    ok: bool
    retryable: bool = False
    error: str = ""


def subscribe(*, user, endpoint: str, p256dh: str, auth: str) -> PushSubscription:
    """Save (or move to `user`) one browser's subscription. ValidationError for an endpoint
    that is not an https URL Handoff may reach (operations.egress)."""
    if not endpoint.startswith(("https://", "http://")) or len(endpoint) > 1000:
        raise ValidationError("The push endpoint must be an http(s) URL.")
    if not p256dh or not auth or len(p256dh) > 200 or len(auth) > 100:
        raise ValidationError("The subscription's keys are missing.")
    validate_outbound_url(endpoint)
    with transaction.atomic():
        subscription, _ = PushSubscription.objects.update_or_create(
            endpoint=endpoint,
            defaults={"user": user, "p256dh": p256dh, "auth": auth, "created_at": timezone.now()},
        )
    return subscription


def unsubscribe(*, user, endpoint: str) -> int:
    return PushSubscription.objects.filter(user=user, endpoint=endpoint).delete()[0]


def payload(notification: Notification) -> str:
    """What the service worker shows (static/js/sw.js): title, body, and the page to open."""
    text = notification.text if len(notification.text) <= BODY_CHARS else notification.text[: BODY_CHARS - 1] + "…"
    return json.dumps({"title": notification.subject, "body": text, "url": notification.link, "tag": notification.key})


def send(notification: Notification) -> Sent:
    """One attempt at every browser of the person; ok when one of them took it."""
    subscriptions = (
        list(PushSubscription.objects.filter(user_id=notification.user_id)) if notification.user_id else []
    )
    if not subscriptions:
        return Sent(False, error="no browser is subscribed to push any more")
    data, errors, retry, delivered = payload(notification), [], False, 0
    for subscription in subscriptions:
        try:
            validate_outbound_url(subscription.endpoint)
            webpush(
                subscription.info(),
                data=data,
                vapid_private_key=settings.VAPID_PRIVATE_KEY,
                vapid_claims={"sub": settings.VAPID_SUBJECT},
                timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
                ttl=TTL_SECONDS,
            )
        except WebPushException as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in GONE:
                subscription.delete()
                errors.append(f"subscription gone ({status})")
                continue
            retry = retry or status is None or status >= 500 or status == 429
            errors.append(f"HTTP {status}" if status else str(exc)[:100])
        except ValidationError as exc:
            errors.append(" ".join(exc.messages)[:200])
        except Exception as exc:  # a network error: try again later
            retry = True
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
        else:
            delivered += 1
    if delivered:
        return Sent(True)
    return Sent(False, retryable=retry, error=("push: " + "; ".join(errors))[:500])
