"""A real local SMTP server for tests: aiosmtpd (RFC 5321) on a free port, with STARTTLS (RFC 3207, a self-signed
certificate made here) required before AUTH (RFC 4954), and the delivered messages kept for the test to read.

``refuse`` makes it answer every DATA with a permanent 554, ``stall`` with nothing at all (the client times out):
the server side of "an SMTP server that refuses or times out".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["SMTPServer", "running_smtp_server"]

USER, PASSWORD = "tenure-mailer", "smtp-pa55word-9f3c1e"


@dataclass
class SMTPServer:
    port: int
    ca_file: Path
    user: str = USER
    password: str = PASSWORD
    messages: list[Message] = field(default_factory=list)
    refuse: bool = False
    stall: bool = False

    def client_tls(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (and checks the host name)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if m["To"] == address]


class _Handler:
    def __init__(self, server: SMTPServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        if self.server.stall:
            await asyncio.sleep(30)
        if self.server.refuse:
            return "554 5.7.1 refused by policy"
        self.server.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@contextmanager
def running_smtp_server(directory: Path) -> Iterator[SMTPServer]:
    """An aiosmtpd server on 127.0.0.1 (a free port, its own thread), stopped when the block ends."""
    cert, key = _certificate(directory)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(str(cert), str(key))
    with socket.socket() as probe:  # a free port (aiosmtpd's start-up check connects to the port it is given)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = SMTPServer(port=port, ca_file=cert)

    def authenticate(smtp: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            server.user.encode(),
            server.password.encode(),
        )
        return AuthResult(success=ok, handled=False)

    controller = Controller(
        _Handler(server),
        hostname="127.0.0.1",
        port=port,
        tls_context=tls,
        require_starttls=True,
        authenticator=authenticate,
        auth_require_tls=True,
        auth_required=True,
    )
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
