"""The one scrubber: no registered secret leaves the process, in any form a peer or a library may give it.

A peer that echoes our credentials in an error body (some do, JSON-escaped or upper-cased), a library that
logs a URL, a traceback that quotes an argument: whatever carries the text, it passes :func:`scrub` on its way
out, *after* every transformation and *before* any cut, so a secret straddling a 300-character cut is still
recognised whole. What is masked (with ``***``):

- each registered secret in its raw, JSON-escaped (also ``\\/`` and JSON-in-JSON), URL-encoded
  (``quote``/``quote_plus``) and base64 forms (standard and URL-safe alphabet, at every byte alignment, so the
  secret inside a Basic ``user:password`` header is found too), ignoring case;
- any run of :data:`RUN_LENGTH` (8) or more characters of any of those forms, so a piece of a secret
  (a truncated echo, the half before a cut) is masked as well; a secret shorter than 8 characters is masked
  where it appears whole (and one shorter than :data:`MIN_SECRET_LENGTH` is not registered: it would mask
  ordinary words);
- URL passwords (``scheme://user:***@``) and ``token=…``-style query values, registered or not.

Registration is weak: :func:`register_secrets` returns the :class:`Redactor`, and the secrets stay registered
while the caller holds it (an ``APIClient`` for its client's life, ``Settings`` for theirs). Where it applies:
every log record, at creation (:func:`install_log_redaction` wraps the log record factory, so every logger and
handler is covered, Prefect's API log handler included); connector errors (``APIClient.scrub``); audit rows
(``engine.auditor``); console output (:func:`install_output_scrubbing` on the CLI's stdout and stderr).
"""

from __future__ import annotations

import atexit
import base64
import json
import logging
import re
import sys
import weakref
from collections.abc import Iterable
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

__all__ = [
    "MASK",
    "RUN_LENGTH",
    "MIN_SECRET_LENGTH",
    "secret_forms",
    "Redactor",
    "RedactingFilter",
    "register_secrets",
    "scrub",
    "scrub_data",
    "cut",
    "mask_urls",
    "install_log_redaction",
    "ScrubbedStream",
    "install_output_scrubbing",
]

MASK = "***"
RUN_LENGTH = 8  # a piece of a secret this long is a leak
MIN_SECRET_LENGTH = 4
_MEMO_LENGTH, _MEMO_SIZE = 256, 65_536  # texts up to this long are remembered, this many at a time
_PROBE = RUN_LENGTH // 2  # every RUN_LENGTH window contains a _PROBE-gram starting at a multiple of _PROBE
_SENSITIVE_PAIR = re.compile(
    r"([?&;\s][\w.\-]*(?:token|key|secret|password|passwd|sig|signature|auth|code)[\w.\-]*=)([^&\s\"'>]+)",
    re.IGNORECASE,
)
# URL userinfo: ``user:password@`` keeps the user name; a bare ``token@`` (a credential as the user) goes whole.
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.\-]*://)(?:([^/@\s:]*):)?[^/@\s]+@", re.IGNORECASE)


def _fold(text: str) -> str:
    """``text`` lower-cased, keeping its length (the few characters whose lower case is longer stay)."""
    folded = text.lower()
    if len(folded) == len(text):
        return folded
    return "".join(low if len(low := c.lower()) == 1 else c for c in text)


def _base64_forms(raw: bytes) -> set[str]:
    """The base64 text ``raw`` alone determines, at each of the three byte alignments it can have inside a
    longer value (``user:secret``, ``Bearer secret``), in both alphabets, without padding."""
    found: set[str] = set()
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * shift + raw).decode().rstrip("=")
            found.add(text[4:] if shift else text)  # the first quantum also encodes the shift bytes
    return found


def secret_forms(secret: str) -> set[str]:
    """``secret`` as it may be echoed: raw, base64, each URL-encoded and JSON-escaped (case is ignored later)."""
    forms = {secret} | _base64_forms(secret.encode())
    forms |= {
        encoded for form in list(forms) for encoded in (quote(form, safe=""), quote(form), quote_plus(form))
    }
    for form in list(forms):
        for escaped in (json.dumps(form)[1:-1], json.dumps(form, ensure_ascii=False)[1:-1]):
            forms |= {escaped, escaped.replace("/", "\\/"), json.dumps(escaped)[1:-1]}
    return forms


class Redactor:
    """Masks the given secrets in any text (see the module docstring for the forms); ``bool`` says whether
    it has any. Holding it keeps the secrets registered when it came from :func:`register_secrets`."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        runs: set[str] = set()
        whole: set[str] = set()
        for secret in {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}:
            for form in map(_fold, secret_forms(secret)):
                if len(secret) < RUN_LENGTH:
                    whole.add(form)
                else:
                    runs.update(form[i : i + RUN_LENGTH] for i in range(len(form) - RUN_LENGTH + 1))
        self._runs = frozenset(runs)
        self._probes = frozenset(run[i : i + _PROBE] for run in runs for i in range(RUN_LENGTH - _PROBE + 1))
        self._whole = (
            re.compile("|".join(map(re.escape, sorted(whole, key=len, reverse=True))), re.IGNORECASE)
            if whole
            else None
        )

    def __bool__(self) -> bool:
        return bool(self._runs) or self._whole is not None

    def __repr__(self) -> str:
        return "Redactor(***)"

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where in ``text`` a form (or an 8-character run of one) of these secrets is, as (start, end)."""
        spans: list[tuple[int, int]] = []
        if self._runs and len(text) >= RUN_LENGTH:
            folded = _fold(text)
            starts: set[int] = set()
            for probe in range(0, len(folded) - _PROBE + 1, _PROBE):
                if folded[probe : probe + _PROBE] in self._probes:
                    first = max(0, probe - (RUN_LENGTH - _PROBE))
                    starts.update(
                        s
                        for s in range(first, min(probe, len(folded) - RUN_LENGTH) + 1)
                        if folded[s : s + RUN_LENGTH] in self._runs
                    )
            spans += [(s, s + RUN_LENGTH) for s in starts]
        if self._whole is not None:
            spans += [m.span() for m in self._whole.finditer(text)]
        return spans

    def __call__(self, text: str) -> str:
        return _masked(text, self.spans(text))


def _masked(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each span replaced by :data:`MASK`, overlapping or touching spans as one."""
    if not spans:
        return text
    spans = sorted(spans)
    pieces: list[str] = []
    position = 0
    start, end = spans[0]
    for next_start, next_end in spans[1:]:
        if next_start <= end:
            end = max(end, next_end)
            continue
        pieces += [text[position:start], MASK]
        position, start, end = end, next_start, next_end
    pieces += [text[position:start], MASK, text[end:]]
    return "".join(pieces)


def _userinfo(match: re.Match[str]) -> str:
    user = match.group(2)
    return f"{match.group(1)}{user}:{MASK}@" if user is not None else f"{match.group(1)}{MASK}@"


def mask_urls(text: str) -> str:
    """Masks URL passwords (``scheme://user:***@``; userinfo without a password whole) and
    ``token=...``-style query values in free text."""
    return _SENSITIVE_PAIR.sub(rf"\1{MASK}", _USERINFO.sub(_userinfo, text))


class RedactingFilter(logging.Filter):
    """Redacts with every registered :class:`Redactor` (held weakly: a dropped one's secrets go with it), URL
    userinfo and sensitive query values. As a logging filter it rewrites a record's message, exception and
    stack text in place."""

    def __init__(self, *redactors: Redactor) -> None:
        super().__init__()
        self._redactors: weakref.WeakSet[Redactor] = weakref.WeakSet()
        self._live: tuple[weakref.ref[Redactor], ...] = ()  # a snapshot: iterating a WeakSet costs a guard
        self._memo: dict[str, str] = {}
        for redactor in redactors:
            self.add(redactor)

    def add(self, redactor: Redactor) -> None:
        if redactor and redactor not in self._redactors:
            self._redactors.add(redactor)
            weakref.finalize(redactor, self._forget)
            self._forget()

    def _forget(self) -> None:
        """A new memo whenever the registered secrets change: a redaction in flight stores into the old one,
        so no answer computed with other secrets is ever read again."""
        self._live = tuple(weakref.ref(redactor) for redactor in self._redactors)
        self._memo = {}

    def redact(self, text: str) -> str:
        """Every registered secret masked (all found in the original text, then masked at once), then URL
        credentials. Short texts are remembered (an audit batch scrubs the same ids and names many times)."""
        memo = self._memo
        if (known := memo.get(text)) is not None:
            return known
        redactors = [redactor for ref in self._live if (redactor := ref()) is not None]
        spans = [span for redactor in redactors for span in redactor.spans(text)]
        redacted = mask_urls(_masked(text, spans))
        if len(text) <= _MEMO_LENGTH:
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            memo[text] = redacted
        return redacted

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: render what we can, never drop the record
            message = str(record.msg)
            record.args = None
        redacted = self.redact(message)
        if redacted != message:
            self._redact_message(record, redacted)
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True

    def _redact_message(self, record: logging.LogRecord, redacted: str) -> None:
        """Scrub the text arguments in place when that suffices, keeping ``args`` for formatters that read
        them (uvicorn's access log unpacks them); else the rendered, scrubbed message replaces both."""
        args = record.args
        if isinstance(args, tuple) and isinstance(record.msg, str):
            scrubbed = tuple(self.redact(a) if isinstance(a, str) else a for a in args)
            try:
                rendered = self.redact(record.msg) % scrubbed
            except (TypeError, ValueError):
                rendered = None
            if rendered is not None and self.redact(rendered) == rendered:
                record.msg, record.args = self.redact(record.msg), scrubbed
                return
        record.msg, record.args = redacted, None


_GLOBAL_FILTER = RedactingFilter()
_FACTORY_MARK = "_tenure_scrubs"


def _install_record_factory() -> None:
    """Wrap the log record factory once, so every record is scrubbed when it is made, whatever its logger."""
    current = logging.getLogRecordFactory()
    if getattr(current, _FACTORY_MARK, False):
        return

    def scrubbing_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        _GLOBAL_FILTER.filter(record)
        return record

    setattr(scrubbing_factory, _FACTORY_MARK, True)
    logging.setLogRecordFactory(scrubbing_factory)


def install_log_redaction(redactor: Redactor | None = None) -> RedactingFilter:
    """Registers ``redactor`` (if given) and makes sure every log record is scrubbed. Idempotent."""
    if redactor is not None:
        _GLOBAL_FILTER.add(redactor)
    _install_record_factory()
    return _GLOBAL_FILTER


def register_secrets(secrets: Iterable[str | None]) -> Redactor:
    """Registers ``secrets`` process-wide for as long as the returned :class:`Redactor` is held."""
    redactor = Redactor(secrets)
    install_log_redaction(redactor)
    return redactor


def scrub(text: str) -> str:
    """``text`` with every registered secret (in every form, and every 8-character run of it) and every URL
    credential masked."""
    return _GLOBAL_FILTER.redact(text)


def scrub_data(value: Any) -> Any:
    """:func:`scrub` applied to every string in a JSON-like value (dict keys and values, list items)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_data(k): scrub_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_data(item) for item in value]
    return value


def cut(text: str, limit: int) -> str:
    """``text`` scrubbed, *then* cut to ``limit`` characters (cutting first could split a secret into pieces
    that are no longer recognised as a whole)."""
    return scrub(text)[:limit]


class ScrubbedStream:
    """A text stream that scrubs what is written through it. Text is held until a line ends (or ``flush``), so
    a secret arriving in several ``write`` calls within one line is still recognised."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in text:
            complete, _, self._pending = self._pending.rpartition("\n")
            self._stream.write(scrub(complete + "\n"))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, ""
            self._stream.write(scrub(pending))
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the wrapped stream's
        return getattr(self._stream, name)


def install_output_scrubbing() -> None:
    """Route this process's ``sys.stdout`` and ``sys.stderr`` through :class:`ScrubbedStream` (idempotent;
    what is still held is written at exit, after any traceback of an uncaught exception)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, ScrubbedStream):
            wrapped = ScrubbedStream(stream)
            setattr(sys, name, wrapped)
            atexit.register(wrapped.flush)
    _install_record_factory()
