"""`make demo`: run Tenure on the embedded default and show the audit trail it leaves."""

from __future__ import annotations

import sys

from models.audit import Outcome
from models.db import session_scope
from models.audit import verify
from tenure.auditor import Auditor
from tenure.settings import load_settings


def main() -> int:
    settings = load_settings()
    auditor = Auditor(settings.database_url, actor="demo")
    auditor.record(action="demo.start", target_system="tenure", outcome=Outcome.APPLIED, reason="make demo")
    with session_scope(settings.database_url) as session:
        result = verify(session=session)
    print(result.describe())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
