"""HiBob webhooks: signature check and payload parsing for ``POST /webhooks/hibob`` (deployments/webhook.py).

Signature ("Working with webhooks", apidocs.hibob.com/docs/working-with-webhooks, step "Authenticate your
events"; every v2 event reference lists the header as "Base64-encoded signature sent with each webhook
request", e.g. reference/post_webhook_employee-joined): header ``Bob-Signature`` = base64 of HMAC-SHA512,
keyed with the webhook's secret key (Bob → Settings → Integrations → Webhooks), over the raw request body
(the algorithm as public Bob clients implement it, e.g. the ``bobhr`` gem's ``Bob::Webhooks.calculate_signature``).
Bob sends no timestamp header, so there is no freshness window: a replayed body gets the original run back
(the receiver's replay guard, then Prefect's idempotency key on the body's SHA-256).

Connection check ("Step 2: Validate your connection"): when a webhook is added Bob posts ``Ping test`` (or
``{"text": "Ping test"}``) and expects a 2xx; it is answered 200 and starts nothing.

Payload, webhooks v2 ("Getting started with Webhooks"; "Employee data Webhooks", reference/employee-data-
webhooks): ``{"companyId", "type", "triggeredBy", "triggeredAt", "version": "v2", "data": {"employeeId",
...}}``. Mapping of the employee events: ``employee.created`` and ``employee.joined`` (the lifecycle entry of
the start date became effective) → hired; ``employee.updated``, ``employee.inactivated``/``activated``/
``temporaryLeave`` and ``table.entry.created``/``updated`` (work, employment or lifecycle table rows) →
changed; ``employee.left`` (terminated or on garden leave) and ``employee.deleted`` → terminated. The flows
re-read the employee from the API, as Bob recommends ("do not rely solely on the data in the payload").
Bob sends no event id: ours is ``<sha256(body)[:32]>:<employeeId>``, like BambooHR's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from deployments.webhook import EventKind, HRISEvent, WebhookRejected

__all__ = ["SIGNATURE_HEADER", "HIBOB_TYPES", "sign_hibob", "verify_hibob", "parse_hibob", "hibob_events"]

SIGNATURE_HEADER = "bob-signature"
_EMPLOYEE_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,100}$")
HIBOB_TYPES: dict[str, EventKind] = {
    "employee.created": "hired",
    "employee.joined": "hired",
    "employee.updated": "changed",
    "employee.inactivated": "changed",
    "employee.activated": "changed",
    "employee.temporaryLeave": "changed",
    "table.entry.created": "changed",
    "table.entry.updated": "changed",
    "employee.left": "terminated",
    "employee.deleted": "terminated",
}
PING_BODIES = (b"Ping test", b'{"text":"Ping test"}', b'{"text": "Ping test"}')


def _employee_id(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _EMPLOYEE_ID.fullmatch(value):
        raise WebhookRejected(422, "missing or malformed employeeId")
    return value


def sign_hibob(secret: str, body: bytes) -> str:
    """Bob's signature: base64 of HMAC-SHA512(secret key, raw body)."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha512).digest()).decode()


def verify_hibob(secret: str, body: bytes, signature: str | None) -> None:
    """401 unless ``signature`` is the body's Bob signature (compared in constant time)."""
    if not signature:
        raise WebhookRejected(401, "missing signature")
    if not hmac.compare_digest(sign_hibob(secret, body).encode(), signature.strip().encode()):
        raise WebhookRejected(401, "invalid signature")


def parse_hibob(body: bytes) -> list[HRISEvent]:
    """A v2 event → one HRISEvent (400 not JSON, 422 wrong shape or an event type we do not handle)."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WebhookRejected(400, "body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(422, "payload is not a JSON object")
    event_type = payload.get("type")
    kind = HIBOB_TYPES.get(event_type) if isinstance(event_type, str) else None
    if kind is None:
        raise WebhookRejected(422, "unknown event type")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise WebhookRejected(422, "event has no data object")
    employee_id = _employee_id(data.get("employeeId"))
    digest = hashlib.sha256(body).hexdigest()[:32]
    return [HRISEvent("hibob", f"{digest}:{employee_id}", kind, employee_id)]


def hibob_events(secret: str, body: bytes, headers: Mapping[str, str]) -> list[HRISEvent]:
    """A delivery's events: none for Bob's connection ping, else the verified, parsed event."""
    if body.strip() in PING_BODIES:
        return []
    verify_hibob(secret, body, headers.get(SIGNATURE_HEADER))
    return parse_hibob(body)
