"""The one error tree every connector raises, named by what the caller should do.

::

    ConnectorError(message, source, status_code, code)
    ├─ NetworkError                      retryable: connect/read failure, timeout
    ├─ RetryableAPIError                 retryable: 429 / 5xx, carries retry_after (seconds)
    ├─ PermanentAPIError                 do not retry: other 4xx, or a body that says "error"
    │  ├─ AuthenticationError            401 / 403
    │  ├─ NotFoundError                  404
    │  └─ ConflictError                  409 (e.g. SCIM uniqueness)
    ├─ ResponseValidationError           the peer answered something we cannot parse (pydantic as __cause__)
    └─ InvalidRecordError                a bad input record: audit it, skip it, go on

Messages never carry secrets: build them from redacted URLs (``connectors.http.redact_url``).
"""

from __future__ import annotations

__all__ = [
    "ConnectorError",
    "NetworkError",
    "RetryableAPIError",
    "PermanentAPIError",
    "AuthenticationError",
    "NotFoundError",
    "ConflictError",
    "ResponseValidationError",
    "InvalidRecordError",
]


class ConnectorError(Exception):
    """Base of all connector errors; ``source`` names the system (e.g. ``scim``, ``bamboohr``); ``code`` is the
    vendor's machine-readable error code where its body carries one (Graph ``error.code``, Google
    ``error.errors[].reason``, OAuth ``error``, Okta ``errorCode``)."""

    retryable: bool = False

    def __init__(
        self, message: str, *, source: str = "", status_code: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.status_code = status_code
        self.code = code

    def __str__(self) -> str:
        prefix = f"[{self.source}] " if self.source else ""
        code = f" (HTTP {self.status_code})" if self.status_code else ""
        return f"{prefix}{self.message}{code}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class NetworkError(ConnectorError):
    """The request may not have reached the peer, or its answer was lost."""

    retryable = True


class RetryableAPIError(ConnectorError):
    """The peer asked us to come back later (429) or failed transiently (5xx)."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        source: str = "",
        status_code: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, source=source, status_code=status_code, code=code)
        self.retry_after = retry_after


class PermanentAPIError(ConnectorError):
    """The peer refused the request; repeating it will not help."""


class AuthenticationError(PermanentAPIError):
    """Credentials missing, wrong or lacking permission (401/403)."""


class NotFoundError(PermanentAPIError):
    """The object (or the endpoint) does not exist (404)."""


class ConflictError(PermanentAPIError):
    """The object clashes with an existing one (409)."""


class ResponseValidationError(ConnectorError):
    """The peer's answer was not what its API documents (HTML, garbage JSON, wrong shape)."""


class InvalidRecordError(ConnectorError):
    """One input record is unusable; it is audited and skipped, the batch goes on.

    ``row`` is the 1-based line in a file source (header = line 1); ``record_id`` is the
    record's id where one could be read; ``field`` names the offending field (our field name) where one
    field is to blame. ``reason`` is short, names the field, and is free of personal data.
    """

    def __init__(
        self,
        reason: str,
        *,
        source: str = "",
        row: int | None = None,
        record_id: str | None = None,
        field: str | None = None,
    ) -> None:
        where = f"row {row}: " if row is not None else ""
        super().__init__(f"{where}{reason}", source=source)
        self.reason = reason
        self.row = row
        self.record_id = record_id
        self.field = field
