"""Which vendor modules a process loads: the CLI only those of its configured connectors, a process that loads
flows every one of them up front (never imported on first use inside a running flow: tenure/compose.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from tenure.compose import VENDOR_MODULES

CLI_BUILDS_SCIM_AND_CSV = """
import json, sys
from pydantic import SecretStr
import tenure.cli.app
from tenure.compose import build_hris, build_identity_provider
from tenure.settings import HRISSettings, IdPSettings
build_hris(HRISSettings(kind="csv", path="hris.csv"))
build_identity_provider(IdPSettings(kind="scim", base_url="http://127.0.0.1:9/", token=SecretStr("t")))
print(json.dumps(sorted(m for m in sys.modules if m.startswith("connectors."))))
"""

LOADS_A_FLOW = """
import json, sys
import flows.sync
print(json.dumps(sorted(m for m in sys.modules if m.startswith("connectors."))))
"""


def _loaded(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_cli_loads_only_the_configured_vendors() -> None:
    loaded = _loaded(CLI_BUILDS_SCIM_AND_CSV)
    assert {"connectors.idp.scim", "connectors.hris.csv_export"} <= loaded
    assert not loaded & (set(VENDOR_MODULES) - {"connectors.idp.scim", "connectors.hris.csv_export"})


def test_loading_a_flow_loads_every_vendor() -> None:
    assert set(VENDOR_MODULES) <= _loaded(LOADS_A_FLOW)
