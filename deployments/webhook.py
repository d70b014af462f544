"""The HRIS webhook receiver: verify, de-duplicate, start the joiner/mover/leaver deployment, answer 202.

Routes (an ASGI app, :func:`create_app`):

``POST /webhooks/bamboohr``
    BambooHR's signed webhook (documentation.bamboohr.com/docs/webhooks, "Security"): header
    ``X-BambooHR-Signature`` = hex HMAC-SHA256, keyed with the webhook's private key, over the raw
    request body followed by the ``X-BambooHR-Timestamp`` header value (unix seconds; ISO 8601 with an
    offset is accepted too). Two documented JSON payload shapes are accepted:

    - event-based (docs/event-based-webhooks):
      ``{"type": "employee.created|updated|deleted", "timestamp": ...,
      "data": {"companyId", "employeeId", "changedFields": [...]}}``;
    - field-based / global (docs/field-based-webhooks, docs/global-webhooks; legacy
      ``employee_with_fields.*`` events): ``{"employees": [{"id", "action": "Created|Updated|Deleted",
      "timestamp", "changedFields": [...], "fields": {...}}]}``.

    Configure the webhook's format as JSON (a form-encoded post is answered 400). Mapping: created →
    hired; updated → changed, except an update whose changed fields include the termination date →
    terminated; deleted → terminated. BambooHR sends no event id, so ours is the SHA-256 of the raw body
    (its retries resend the same body) plus the employee id: ``<sha256[:32]>:<employee id>``. A delivery
    naming several employees starts one run each; it is refused whole (nothing started) if any is invalid.

``POST /webhooks/hibob``
    HiBob's signed v2 webhook (``Bob-Signature``, base64 HMAC-SHA512 of the body): parsed and verified in
    :mod:`deployments.hibob_webhook`; Bob's connection ping is answered 200 and starts nothing.

``POST /webhooks/generic``
    Any HRIS or script: header ``X-Tenure-Timestamp`` (unix seconds) and ``X-Tenure-Signature:
    sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>``; body ``{"event_id", "type":
    "employee.hired|employee.changed|employee.terminated", "employee_id"}``.

``GET /healthz``
    Liveness: ``{"status": "ok"}``.

Each accepted event starts the deployment named in ``settings.webhook.event_deployments`` (hired →
``joiner/joiner``, changed → ``mover/mover``, terminated → ``leaver/leaver``) with ``{"employee_id": ...}`` and
``idempotency_key="hris:<source>:<event_id>"``, then emits the Prefect event ``hris.employee.<kind>`` about the
resource ``tenure.employee.<id>`` (no personal data). The answer is **202** with the flow run id as soon as the run
exists (not when it finishes).

Errors, checked in this order; none starts a run, each is logged without the body's content:

- 413: body larger than ``max_body_bytes`` (by Content-Length, and counted while reading);
- 401: missing/invalid signature, timestamp missing or outside ``max_skew_seconds``, no secret configured;
- 400: body is not JSON, or JSON that can never be processed: nested deeper than :data:`MAX_JSON_DEPTH`, a number
  longer than :data:`MAX_JSON_NUMBER_CHARS` characters, ``NaN``/``Infinity`` (not JSON, RFC 8259 §6);
- 422: JSON of the wrong shape, unknown event type or action;
- 409: an event id accepted earlier with a *different* body (see replays);
- 503 (with Retry-After; the HRIS re-delivers): Prefect API unreachable after ``start_attempts`` tries with
  exponential backoff, or the deployment does not exist.

Replays: a delivery's identity is its event id **and** the SHA-256 of its body. The same id with the same body,
within the replay window (2 × ``max_skew_seconds``; an older delivery fails the timestamp check anyway), answers
**200** with the *original* flow run id and ``"duplicate": true`` rather than 409, because an HRIS that
re-delivers a webhook wants a 2xx to stop retrying. The same id with another (validly signed) body is refused
with **409** and an audit row ``webhook.replay.conflict`` (both digests, the first run), never dropped as a
duplicate. The window is kept in process; the flow run's idempotency key is ``hris:<source>:<event id>:<first
16 hex of the body digest>``, so after a restart a re-delivery still returns the original run, and another body
starts its own run instead of being folded into the first.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.redaction import register_secrets
from engine.applier import Applier
from engine.auditor import Auditor
from models.audit import Outcome
from tenure.compose import register_settings_secrets
from tenure.settings import Settings, WebhookSettings, reveal, secret_values

__all__ = [
    "EventKind",
    "HRISEvent",
    "RunRequest",
    "StartRun",
    "Emit",
    "WebhookRejected",
    "RunStartUnavailable",
    "ReplayConflict",
    "ReplayGuard",
    "PrefectRunStarter",
    "sign_generic",
    "sign_bamboohr",
    "parse_generic",
    "parse_bamboohr",
    "create_app",
]

log = logging.getLogger("tenure.webhook")

EventKind = Literal["hired", "changed", "terminated"]
GENERIC_TYPES: dict[str, EventKind] = {
    "employee.hired": "hired",
    "employee.changed": "changed",
    "employee.terminated": "terminated",
}
BAMBOOHR_ACTIONS: dict[str, EventKind] = {"created": "hired", "updated": "changed", "deleted": "terminated"}
BAMBOOHR_EVENT_PREFIXES = ("employee.", "employee_with_fields.")
TERMINATION_FIELDS = frozenset({"terminationdate", "termination date"})
_TIMESTAMP = re.compile(r"^\d{1,12}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_EVENT_ID = re.compile(r"^[A-Za-z0-9._:@/-]{1,200}$")
_EMPLOYEE_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,100}$")
MAX_JSON_DEPTH = 32  # nesting of objects and arrays; HRIS payloads need 4 or 5
MAX_JSON_NUMBER_CHARS = 64  # digits, sign, point and exponent of one number


# -- values --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HRISEvent:
    """One employee event from an HRIS, reduced to what starts a flow (no personal data)."""

    source: str
    event_id: str
    kind: EventKind
    employee_id: str

    @property
    def idempotency_key(self) -> str:
        return f"hris:{self.source}:{self.event_id}"


@dataclass(frozen=True)
class RunRequest:
    """What to start: a deployment (``flow/deployment``) with parameters, idempotently, for one event of a
    delivery whose body has the SHA-256 ``body_sha256``."""

    deployment: str
    parameters: dict[str, Any]
    idempotency_key: str
    name: str
    event: HRISEvent = field(repr=False)
    body_sha256: str = ""


StartRun = Callable[[RunRequest], Awaitable[str]]  # returns the flow run id
Emit = Callable[..., Any]  # prefect.events.emit_event's signature


class WebhookRejected(Exception):
    """A request we refuse; ``reason`` is safe to log and to answer with (never body content)."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


class RunStartUnavailable(Exception):
    """The flow run could not be created now (Prefect API down, deployment missing): answer 503."""


class ReplayConflict(Exception):
    """An event id already accepted with another body (``first_digest``, which started ``run_id``)."""

    def __init__(self, key: str, first_digest: str, run_id: str | None) -> None:
        super().__init__(f"event {key} was accepted earlier with a different body")
        self.key = key
        self.first_digest = first_digest
        self.run_id = run_id


# -- signatures ----------------------------------------------------------------------------------------------


def sign_generic(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256(secret, ``timestamp + "." + body``)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def sign_bamboohr(secret: str, timestamp: str, body: bytes) -> str:
    """BambooHR: hex HMAC-SHA256(private key, raw body + ``X-BambooHR-Timestamp``)."""
    return hmac.new(secret.encode(), body + timestamp.encode(), hashlib.sha256).hexdigest()


def _timestamp_seconds(value: str, *, allow_iso: bool) -> float:
    value = value.strip()
    if _TIMESTAMP.fullmatch(value):
        return float(value)
    if allow_iso:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is not None:
                return moment.timestamp()
    raise WebhookRejected(401, "malformed timestamp")


def _check_fresh(timestamp: str | None, *, now: float, max_skew: int, allow_iso: bool = False) -> None:
    if not timestamp:
        raise WebhookRejected(401, "missing timestamp")
    if abs(now - _timestamp_seconds(timestamp, allow_iso=allow_iso)) > max_skew:
        raise WebhookRejected(401, "timestamp outside the allowed window")


def _verify(expected: str, given: str | None) -> None:
    if not given:
        raise WebhookRejected(401, "missing signature")
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        raise WebhookRejected(401, "invalid signature")


# -- payloads ------------------------------------------------------------------------------------------------


def _json_number(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        if len(text) > MAX_JSON_NUMBER_CHARS:
            raise WebhookRejected(400, f"JSON number longer than {MAX_JSON_NUMBER_CHARS} characters")
        return kind(text)

    return parse


def _not_json_constant(name: str) -> Any:
    raise WebhookRejected(400, f"body is not JSON ({name} is not a JSON value)")


def _json_depth(value: Any) -> int:
    """How deeply objects and arrays nest in a parsed value (iteratively: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack += [(child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)]
    return deepest


def _json(body: bytes) -> Any:
    """The parsed body, or 400: not JSON, nested deeper than MAX_JSON_DEPTH, or a number too long to be an id
    (Python's int would refuse 4,300+ digits anyway: a request that can never succeed is a 4xx, not a 5xx)."""
    try:
        value = json.loads(
            body,
            parse_int=_json_number(int),
            parse_float=_json_number(float),
            parse_constant=_not_json_constant,
        )
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WebhookRejected(400, "body is not JSON") from None
    except RecursionError:
        raise WebhookRejected(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    if _json_depth(value) > MAX_JSON_DEPTH:
        raise WebhookRejected(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _identifier(value: Any, pattern: re.Pattern[str], what: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise WebhookRejected(422, f"missing or malformed {what}")
    return value


def parse_generic(body: bytes) -> HRISEvent:
    """The generic payload → one event (400 not JSON, 422 wrong shape or unknown type)."""
    payload = _json(body)
    if not isinstance(payload, dict):
        raise WebhookRejected(422, "payload is not a JSON object")
    kind = GENERIC_TYPES.get(payload.get("type")) if isinstance(payload.get("type"), str) else None
    if kind is None:
        raise WebhookRejected(422, "unknown event type")
    return HRISEvent(
        source="generic",
        event_id=_identifier(payload.get("event_id"), _EVENT_ID, "event_id"),
        kind=kind,
        employee_id=_identifier(payload.get("employee_id"), _EMPLOYEE_ID, "employee_id"),
    )


def _bamboohr_kind(action: Any, changed_fields: Any) -> EventKind:
    if not isinstance(action, str) or action.lower() not in BAMBOOHR_ACTIONS:
        raise WebhookRejected(422, "unknown event type")
    kind = BAMBOOHR_ACTIONS[action.lower()]
    if (
        kind == "changed"
        and isinstance(changed_fields, list)
        and any(isinstance(f, str) and f.strip().lower() in TERMINATION_FIELDS for f in changed_fields)
    ):
        return "terminated"
    return kind


def parse_bamboohr(body: bytes) -> list[HRISEvent]:
    """BambooHR's event-based or field-based payload → events (400 not JSON, 422 unknown shape/action)."""
    payload = _json(body)
    if not isinstance(payload, dict):
        raise WebhookRejected(422, "payload is not a JSON object")
    digest = hashlib.sha256(body).hexdigest()[:32]
    pairs: list[tuple[Any, EventKind]] = []
    if "type" in payload:  # event-based
        event_type = payload.get("type")
        if not isinstance(event_type, str) or not event_type.startswith(BAMBOOHR_EVENT_PREFIXES):
            raise WebhookRejected(422, "unknown event type")
        data = payload.get("data")
        if not isinstance(data, dict):
            raise WebhookRejected(422, "event has no data object")
        action = event_type.split(".", 1)[1]
        pairs.append((data.get("employeeId"), _bamboohr_kind(action, data.get("changedFields"))))
    elif "employees" in payload:  # field-based (global) webhook
        employees = payload.get("employees")
        if not isinstance(employees, list):
            raise WebhookRejected(422, "employees is not a list")
        for entry in employees:
            if not isinstance(entry, dict):
                raise WebhookRejected(422, "employee entry is not an object")
            pairs.append((entry.get("id"), _bamboohr_kind(entry.get("action"), entry.get("changedFields"))))
    else:
        raise WebhookRejected(422, "unknown payload shape")
    events = []
    for raw_id, kind in pairs:
        employee_id = _identifier(raw_id, _EMPLOYEE_ID, "employee id")
        events.append(HRISEvent("bamboohr", f"{digest}:{employee_id}", kind, employee_id))
    return events


# -- replay window -------------------------------------------------------------------------------------------


class ReplayGuard:
    """Event keys accepted within ``ttl`` seconds → (body digest, flow run id); concurrent twins share one start,
    and the same key with another digest is a :class:`ReplayConflict`."""

    def __init__(
        self, ttl: float, *, max_entries: int = 50_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._done: OrderedDict[str, tuple[float, str, str]] = OrderedDict()  # key -> (expiry, digest, run)
        self._inflight: dict[str, tuple[str, asyncio.Future[str]]] = {}

    def _purge(self) -> None:
        now = self._clock()
        while self._done:
            oldest_expiry = next(iter(self._done.values()))[0]
            if oldest_expiry > now and len(self._done) <= self.max_entries:
                break
            self._done.popitem(last=False)

    async def run_once(self, key: str, digest: str, start: Callable[[], Awaitable[str]]) -> tuple[str, bool]:
        """``(run id, duplicate)``: the remembered run for a replay of the same body, else the result of
        ``start()``; ReplayConflict for the same key with another body."""
        self._purge()
        if (done := self._done.get(key)) is not None:
            _, first_digest, run_id = done
            if first_digest != digest:
                raise ReplayConflict(key, first_digest, run_id)
            return run_id, True
        if key in self._inflight:
            first_digest, pending = self._inflight[key]
            if first_digest != digest:
                raise ReplayConflict(key, first_digest, None)
            return await asyncio.shield(pending), True
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._inflight[key] = (digest, future)
        try:
            run_id = await start()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: nobody may be waiting
            raise
        else:
            future.set_result(run_id)
            self._done[key] = (self._clock() + self.ttl, digest, run_id)
            return run_id, False
        finally:
            del self._inflight[key]


# -- starting runs -------------------------------------------------------------------------------------------


class PrefectRunStarter:
    """Creates the flow run through the Prefect API, retrying transport failures with exponential backoff."""

    def __init__(
        self,
        *,
        attempts: int = 3,
        backoff_seconds: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.sleep = sleep
        self._deployment_ids: dict[str, Any] = {}

    async def __call__(self, request: RunRequest) -> str:
        import httpx
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        last: Exception | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                async with get_client() as client:
                    deployment_id = self._deployment_ids.get(request.deployment)
                    if deployment_id is None:
                        deployment = await client.read_deployment_by_name(request.deployment)
                        deployment_id = self._deployment_ids[request.deployment] = deployment.id
                    run = await client.create_flow_run_from_deployment(
                        deployment_id,
                        parameters=request.parameters,
                        idempotency_key=request.idempotency_key,
                        name=request.name,
                        tags=["hris-webhook", f"hris:{request.event.source}"],
                    )
                    return str(run.id)
            except ObjectNotFound:
                self._deployment_ids.pop(request.deployment, None)
                raise RunStartUnavailable(f"deployment {request.deployment} does not exist") from None
            except (httpx.HTTPError, OSError) as exc:
                status = getattr(getattr(exc, "response", None), "status_code", None)
                if status is not None and status < 500 and status != 429:
                    raise RunStartUnavailable(f"Prefect API refused the run (HTTP {status})") from None
                last = exc
                log.warning(
                    "Prefect API attempt %d/%d failed: %s", attempt, self.attempts, type(exc).__name__
                )
                if attempt < self.attempts:
                    await self.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        raise RunStartUnavailable(
            f"Prefect API unreachable after {self.attempts} attempts ({type(last).__name__})"
        )


def _prefect_emit(**kwargs: Any) -> Any:
    from prefect.events import emit_event

    return emit_event(**kwargs)


# -- the app -------------------------------------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes by Content-Length and while counting (413)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise WebhookRejected(400, "malformed Content-Length")
        if int(declared) > limit:
            raise WebhookRejected(413, "body too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WebhookRejected(413, "body too large")
        chunks.append(chunk)
    return b"".join(chunks)


class _Secret:
    """A secret revealed at first use (it may name a Prefect Secret block) and kept in memory."""

    def __init__(self, *candidates: Any) -> None:
        self._candidates = candidates
        self._value: str | None = None

    def __repr__(self) -> str:
        return "_Secret(***)"

    def get(self) -> str | None:
        if self._value is None:
            for candidate in self._candidates:
                if candidate is not None:
                    self._value = reveal(candidate)
                    break
        return self._value


def create_app(
    settings: Settings | WebhookSettings,
    *,
    start_run: StartRun | None = None,
    emit: Emit | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The receiver as a Starlette app. ``start_run`` (default: :class:`PrefectRunStarter`) creates the flow
    run and returns its id; ``emit`` (default: ``prefect.events.emit_event``) publishes the Prefect event."""
    config = settings.webhook if isinstance(settings, Settings) else settings
    starter: StartRun = start_run or PrefectRunStarter(
        attempts=config.start_attempts, backoff_seconds=config.start_backoff_seconds
    )
    emitter: Emit = emit or _prefect_emit
    generic_secret = _Secret(config.secret)
    bamboohr_secret = _Secret(config.bamboohr_secret, config.secret)
    hibob_secret = _Secret(config.hibob_secret, config.secret)
    guard = ReplayGuard(ttl=2 * config.max_skew_seconds)
    scrubber = (  # the receiver's secrets (and the database password) masked wherever its text goes
        register_settings_secrets(settings)
        if isinstance(settings, Settings)
        else register_secrets(secret_values(config))
    )
    evidence = (  # the one door for audit rows (engine.applier); the receiver only ever notes evidence
        Applier(auditor=Auditor(settings.database_url, actor="webhook"))
        if isinstance(settings, Settings)
        else None
    )

    def secret_or_reject(secret: _Secret, source: str) -> str:
        value = secret.get()
        if not value:
            log.error("no webhook secret configured for %s: refusing every request", source)
            raise WebhookRejected(401, "receiver has no secret configured")
        return value

    def plan(event: HRISEvent, body_sha256: str) -> RunRequest:
        """The run an event asks for; 422 if no deployment is configured for its kind."""
        deployment = config.event_deployments.get(event.kind)
        if not deployment:
            raise WebhookRejected(422, f"no deployment configured for {event.kind}")
        return RunRequest(
            deployment=deployment,
            parameters={"employee_id": event.employee_id},
            idempotency_key=f"{event.idempotency_key}:{body_sha256[:16]}",
            name=f"{deployment.split('/', 1)[0]}-{event.employee_id}",
            event=event,
            body_sha256=body_sha256,
        )

    async def refuse_conflict(request: RunRequest, conflict: ReplayConflict) -> WebhookRejected:
        """Audit a second body under an accepted event id; the answer is 409."""
        event = request.event
        log.warning("%s event %s replayed with a different body: refused (409)", event.source, event.event_id)
        if evidence is not None:
            try:
                await asyncio.to_thread(
                    evidence.note,
                    action="webhook.replay.conflict",
                    target_system=event.source,
                    employee_id=event.employee_id,
                    outcome=Outcome.FAILED,
                    reason=f"event id {event.event_id} was accepted earlier with a different body; refused",
                    details={
                        "event_id": event.event_id,
                        "body_sha256": request.body_sha256,
                        "first_body_sha256": conflict.first_digest,
                        "flow_run_id": conflict.run_id,
                    },
                )
            except Exception as exc:  # the answer is 409 either way; the log line above stands
                log.error("could not audit the replay conflict: %s", type(exc).__name__)
        return WebhookRejected(409, f"event id {event.event_id} was accepted earlier with a different body")

    async def accept(request: RunRequest) -> dict[str, Any]:
        event = request.event
        key = f"{event.source}:{event.event_id}"
        try:
            run_id, duplicate = await guard.run_once(key, request.body_sha256, lambda: starter(request))
        except ReplayConflict as conflict:
            raise await refuse_conflict(request, conflict) from None
        if duplicate:
            log.info("replayed %s event %s: flow run %s already exists", event.source, event.event_id, run_id)
        else:
            log.info(
                "%s event %s (%s, employee %s) started %s as flow run %s",
                event.source,
                event.event_id,
                event.kind,
                event.employee_id,
                request.deployment,
                run_id,
            )
            _emit_event(request, run_id)
        return {
            "event_id": event.event_id,
            "kind": event.kind,
            "employee_id": event.employee_id,
            "deployment": request.deployment,
            "flow_run_id": run_id,
            "duplicate": duplicate,
        }

    def _emit_event(request: RunRequest, run_id: str) -> None:
        event = request.event
        try:
            emitter(
                event=f"hris.employee.{event.kind}",
                resource={"prefect.resource.id": f"tenure.employee.{event.employee_id}"},
                related=[
                    {"prefect.resource.id": f"prefect.flow-run.{run_id}", "prefect.resource.role": "flow-run"}
                ],
                payload={"source": event.source, "event_id": event.event_id},
                id=uuid.uuid5(uuid.NAMESPACE_URL, request.idempotency_key),
            )
        except Exception as exc:  # an event is a notification: never fail the webhook for it
            log.warning("could not emit Prefect event for %s: %s", event.event_id, type(exc).__name__)

    async def handle(
        request: Request, source: str, events_of: Callable[[bytes, Mapping[str, str]], list[HRISEvent]]
    ) -> JSONResponse:
        try:
            body = await _read_body(request, config.max_body_bytes)
            events = events_of(body, request.headers)
            digest = hashlib.sha256(body).hexdigest()
            requests = [plan(event, digest) for event in events]  # refuse the whole delivery before any start
            results = [await accept(request) for request in requests]
        except WebhookRejected as rejected:
            log.warning("rejected %s webhook: %s (HTTP %d)", source, rejected.reason, rejected.status_code)
            return JSONResponse({"error": rejected.reason}, status_code=rejected.status_code)
        except ClientDisconnect:  # e.g. closed by the server's body timeout (deployments/webhook_server.py)
            log.debug("%s webhook: the client went away before its request was read", source)
            return JSONResponse({"error": "request not received"}, status_code=400)
        except RunStartUnavailable as exc:
            log.error("%s webhook not processed, answering 503: %s", source, exc)
            return JSONResponse(
                {"error": "flow runs cannot be started now; retry later"},
                status_code=503,
                headers={"Retry-After": "30"},
            )
        except Exception:
            log.exception("%s webhook failed unexpectedly, answering 503", source)
            return JSONResponse({"error": "internal error; retry later"}, status_code=503)
        status = 200 if all(r["duplicate"] for r in results) else 202
        if source == "generic":
            return JSONResponse(results[0], status_code=status)
        return JSONResponse({"accepted": results}, status_code=status)

    def generic_events(body: bytes, headers: Mapping[str, str]) -> list[HRISEvent]:
        secret = secret_or_reject(generic_secret, "generic")
        timestamp = headers.get("x-tenure-timestamp")
        _check_fresh(timestamp, now=clock(), max_skew=config.max_skew_seconds)
        _verify(sign_generic(secret, timestamp or "", body), headers.get("x-tenure-signature"))
        return [parse_generic(body)]

    def bamboohr_events(body: bytes, headers: Mapping[str, str]) -> list[HRISEvent]:
        secret = secret_or_reject(bamboohr_secret, "bamboohr")
        timestamp = headers.get("x-bamboohr-timestamp")
        _check_fresh(timestamp, now=clock(), max_skew=config.max_skew_seconds, allow_iso=True)
        _verify(sign_bamboohr(secret, timestamp or "", body), headers.get("x-bamboohr-signature"))
        return parse_bamboohr(body)

    def hibob_events(body: bytes, headers: Mapping[str, str]) -> list[HRISEvent]:
        from deployments.hibob_webhook import hibob_events as verified_events

        return verified_events(secret_or_reject(hibob_secret, "hibob"), body, headers)

    async def hibob(request: Request) -> JSONResponse:
        return await handle(request, "hibob", hibob_events)

    async def generic(request: Request) -> JSONResponse:
        return await handle(request, "generic", generic_events)

    async def bamboohr(request: Request) -> JSONResponse:
        return await handle(request, "bamboohr", bamboohr_events)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/webhooks/bamboohr", bamboohr, methods=["POST"]),
            Route("/webhooks/hibob", hibob, methods=["POST"]),
            Route("/webhooks/generic", generic, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    app.state.replay_guard = guard
    app.state.scrubber = scrubber  # registered while the app lives
    return app
