"""E-mail over SMTP (RFC 5321) with STARTTLS (RFC 3207) and AUTH (RFC 4954), via the standard library.

One connection per message, in a worker thread (``smtplib`` is blocking): notifications are few, and a fresh
connection never inherits a half-closed one. STARTTLS is required unless ``starttls=False`` (a local relay);
credentials are sent only after it. The Message-ID is derived from the notice's ledger key, so a receiver can
recognise a repeat. Every failure — refused, timed out, authentication, TLS — is a :class:`ConnectorError`
whose message names the server, never the password.
"""

from __future__ import annotations

import asyncio
import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Self

from connectors.errors import AuthenticationError, ConnectorError, NetworkError, PermanentAPIError
from connectors.redaction import register_secrets
from models.domain import Notice

__all__ = ["SMTPNotifier"]


class SMTPNotifier:
    """Send each notice as a plain-text e-mail from ``sender`` through ``host:port``."""

    source = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        tls_context: ssl.SSLContext | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self._username, self._password = username, password
        self._redact = register_secrets([password])  # masked everywhere while this notifier lives
        self.starttls = starttls
        self._tls = tls_context or ssl.create_default_context()
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SMTPNotifier(host={self.host!r}, port={self.port}, starttls={self.starttls})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def message_id(self, notice: Notice) -> str:
        digest = hashlib.sha256(notice.key.encode()).hexdigest()[:32]
        return f"<{digest}@tenure>"

    async def send(self, notice: Notice) -> str:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, notice.to, notice.subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = self.message_id(notice)
        message.set_content(notice.body)
        await asyncio.to_thread(self._deliver, message)
        return str(message["Message-ID"])

    def _deliver(self, message: EmailMessage) -> None:
        where = f"SMTP server {self.host}:{self.port}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    if not smtp.has_extn("starttls"):
                        raise PermanentAPIError(f"{where} does not offer STARTTLS", source=self.source)
                    smtp.starttls(context=self._tls)
                    smtp.ehlo()
                if self._username and self._password:
                    smtp.login(self._username, self._password)
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise AuthenticationError(
                f"{where} refused the credentials ({exc.smtp_code}); check TENURE_NOTIFY__SMTP_USERNAME/PASSWORD",
                source=self.source,
            ) from None
        except smtplib.SMTPResponseException as exc:
            kind = NetworkError if 400 <= exc.smtp_code < 500 else PermanentAPIError
            raise kind(f"{where} refused the message ({exc.smtp_code})", source=self.source) from None
        except smtplib.SMTPRecipientsRefused:
            raise PermanentAPIError(f"{where} refused the recipient", source=self.source) from None
        except (smtplib.SMTPException, ssl.SSLError) as exc:
            raise ConnectorError(f"{where}: {type(exc).__name__}", source=self.source) from None
        except (TimeoutError, OSError) as exc:
            raise NetworkError(f"{where} unreachable: {type(exc).__name__}", source=self.source) from None
