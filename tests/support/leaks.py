"""Finding a secret in produced text the way an attacker would: in any encoding a peer or library may apply,
in any case, and as any 8-character piece (written independently of ``connectors.redaction``)."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

__all__ = ["forms", "leaked_runs", "hostile_echo"]

RUN = 8


def forms(secret: str) -> set[str]:
    """How a peer or a library may echo ``secret`` (written independently of the implementation)."""
    json_escaped = json.dumps(secret)[1:-1]
    found = {
        secret,
        json_escaped,
        json_escaped.replace("/", "\\/"),
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        base64.b64encode(secret.encode()).decode(),
        base64.urlsafe_b64encode(secret.encode()).decode(),
    }
    for prefix in ("u:", "user:", "Bearer "):
        encoded = base64.b64encode((prefix + secret).encode()).decode()
        found.add(encoded[4 * ((len(prefix) + 2) // 3) : -4])  # the part the secret alone determines
    return found


def leaked_runs(text: str, secret: str, run: int = RUN) -> list[str]:
    """Every ``run``-character piece of any form of ``secret`` found in ``text``, ignoring case."""
    folded = text.lower()
    return sorted(
        {
            form[i : i + run]
            for form in forms(secret)
            for i in range(len(form) - run + 1)
            if form[i : i + run].lower() in folded
        }
    )


def hostile_echo(secret: str) -> str:
    """An error body that echoes ``secret`` in every form, and pieces of it."""
    return " | ".join(
        [
            f"raw {secret}",
            "json " + json.dumps({"token": secret}).replace("/", "\\/"),
            f"upper {secret.upper()} lower {secret.lower()}",
            f"url ?access={quote(secret, safe='')} plus {quote_plus(secret)}",
            f"b64 {base64.b64encode(secret.encode()).decode()}",
            f"basic {base64.b64encode(f'svc:{secret}'.encode()).decode()}",
            f"piece {secret[3:14]} and {secret[-12:]}",
        ]
    )
