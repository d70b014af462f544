"""Look at the Prefect UI the way a person would: headless Chromium renders the runs and artifacts pages of a
Prefect server and we check that the flow runs and artifacts the API knows about are actually shown.

    python scripts/ui_check.py                       # the running demo (.tenure/demo/state.json) or :4200
    python scripts/ui_check.py --url http://127.0.0.1:4200 --expect joiner-E90024 --artifact lifecycle-e90024

Without ``--expect``/``--artifact`` the newest (non-scheduled) flow run names and artifact keys are read from
the API, and so is the newest Failed task run (a failed step: the demo's leave has one): its page must show it
by name as Failed, as a person opening the red task in the run's graph sees it (``--no-failed-task`` skips
this, ``--failed-task ID`` names one). The rendered DOM comes from ``chromium --headless --dump-dom`` with a virtual-time budget (the UI is a
single-page app that fetches after load); a screenshot of the runs page is kept (default
``test-artifacts/ui-runs.png``). Exit code 0 when everything expected is shown, 1 when something is missing,
2 when the page cannot be rendered at all.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from html import unescape
from pathlib import Path

import httpx

__all__ = [
    "CHROMIUM_FLAGS",
    "render",
    "visible_text",
    "expected_from_api",
    "failed_task_runs",
    "check",
    "check_failed_task",
    "main",
]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1400,900",
)


def chromium() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("chromium is not installed: run scripts/install-peers.sh")


def render(url: str, *, screenshot: Path | None = None, budget_ms: int = 15000, timeout: float = 120) -> str:
    """The DOM of ``url`` after the page's scripts ran for ``budget_ms`` of virtual time (and a screenshot)."""
    with tempfile.TemporaryDirectory(prefix="ui-check-") as profile:
        base = [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
        ]
        dom = subprocess.run(
            [*base, "--dump-dom", url], capture_output=True, text=True, timeout=timeout, check=False
        )
        if dom.returncode != 0 or not dom.stdout.strip():
            raise RuntimeError(f"chromium could not render {url} ({dom.returncode}): {dom.stderr[-1000:]}")
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [*base, f"--screenshot={screenshot.resolve()}", url],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        return dom.stdout


def visible_text(dom: str) -> str:
    """Text of the rendered DOM (scripts and styles dropped, tags stripped, whitespace folded)."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.DOTALL | re.IGNORECASE)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", dom)))


def expected_from_api(api_url: str, *, runs: int = 5, artifacts: int = 3) -> tuple[list[str], list[str]]:
    """Names of the newest finished flow runs and keys of the newest keyed artifacts."""
    with httpx.Client(base_url=api_url.rstrip("/") + "/", timeout=30) as client:
        found = (
            client.post(
                "flow_runs/filter",
                json={
                    "sort": "START_TIME_DESC",
                    "limit": runs,
                    "flow_runs": {
                        "state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]}}
                    },
                },
            )
            .raise_for_status()
            .json()
        )
        keyed = client.post("artifacts/latest/filter", json={"sort": "CREATED_DESC", "limit": artifacts})
        keys = [a["key"] for a in keyed.raise_for_status().json() if a.get("key")]
    return [run["name"] for run in found], keys


def failed_task_runs(api_url: str, *, limit: int = 1) -> list[dict[str, str]]:
    """The newest Failed task runs: ``{"id", "name", "message"}`` each."""
    with httpx.Client(base_url=api_url.rstrip("/") + "/", timeout=30) as client:
        found = client.post(
            "task_runs/filter",
            json={
                "sort": "EXPECTED_START_TIME_DESC",
                "limit": limit,
                "task_runs": {"state": {"type": {"any_": ["FAILED"]}}},
            },
        )
        runs = found.raise_for_status().json()
    return [
        {"id": run["id"], "name": run["name"], "message": (run.get("state") or {}).get("message") or ""}
        for run in runs
    ]


def check_failed_task(ui_url: str, api_url: str, task_run_id: str, *, attempts: int = 3) -> str | None:
    """Render the task run's page: it must show the run's name and the state "Failed". None when it does,
    else what is missing."""
    with httpx.Client(base_url=api_url.rstrip("/") + "/", timeout=30) as client:
        run = client.get(f"task_runs/{task_run_id}").raise_for_status().json()
    if (run.get("state") or {}).get("type") != "FAILED":
        return f"task run {run['name']} is {(run.get('state') or {}).get('type')}, not FAILED, in the API"
    for attempt in range(attempts):
        text = visible_text(
            render(f"{ui_url.rstrip('/')}/runs/task-run/{task_run_id}", budget_ms=15000 * (attempt + 1))
        )
        if run["name"] in text and "Failed" in text:
            return None
    return f"the page of task run {run['name']} does not show it as Failed"


def check(
    ui_url: str, names: list[str], artifact_keys: list[str], *, screenshot: Path | None, attempts: int = 3
) -> dict[str, list[str]]:
    """Render the runs (and artifacts) pages until everything expected shows or ``attempts`` run out;
    returns ``{"missing_runs": [...], "missing_artifacts": [...]}``."""
    ui_url = ui_url.rstrip("/")
    missing_runs, missing_artifacts = list(names), list(artifact_keys)
    for attempt in range(attempts):
        budget = 15000 * (attempt + 1)
        if missing_runs:
            text = visible_text(render(f"{ui_url}/runs", screenshot=screenshot, budget_ms=budget))
            missing_runs = [n for n in missing_runs if n not in text]
        if missing_artifacts:
            text = visible_text(render(f"{ui_url}/artifacts", budget_ms=budget))
            missing_artifacts = [k for k in missing_artifacts if k not in text]
        if not missing_runs and not missing_artifacts:
            break
    return {"missing_runs": missing_runs, "missing_artifacts": missing_artifacts}


def _default_url() -> str:
    state = ROOT / ".tenure" / "demo" / "state.json"
    if state.exists():
        info = json.loads(state.read_text()).get("info", {})
        if info.get("ui_url"):
            return str(info["ui_url"])
    return "http://127.0.0.1:4200"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check that the Prefect UI shows the runs and artifacts.")
    parser.add_argument("--url", default=None, help="the Prefect UI root (default: the demo's, else :4200)")
    parser.add_argument("--expect", action="append", default=[], help="a flow run name that must be shown")
    parser.add_argument("--artifact", action="append", default=[], help="an artifact key that must be shown")
    parser.add_argument("--failed-task", default=None, help="a task run id that must show as Failed")
    parser.add_argument(
        "--no-failed-task", action="store_true", help="do not look for a Failed task run (a failed step)"
    )
    parser.add_argument("--screenshot", type=Path, default=ROOT / "test-artifacts" / "ui-runs.png")
    args = parser.parse_args(argv)
    ui_url = (args.url or _default_url()).rstrip("/")
    api_url = f"{ui_url}/api"
    names, keys = args.expect, args.artifact
    failed_task: str | None = None
    try:
        looking = not names and not keys
        if looking:
            names, keys = expected_from_api(api_url)
        if not names:
            print(f"no finished flow runs on {ui_url}: nothing to look for", file=sys.stderr)
            return 1
        result = check(ui_url, names, keys, screenshot=args.screenshot)
        if args.failed_task or (looking and not args.no_failed_task):
            failed = [{"id": args.failed_task}] if args.failed_task else failed_task_runs(api_url)
            if not failed:
                failed_task = (
                    "no Failed task run on the server (the demo's leave has one): nothing red to check"
                )
            else:
                failed_task = check_failed_task(ui_url, api_url, failed[0]["id"])
                if failed_task is None:
                    print(f"task run page shows {failed[0].get('name') or failed[0]['id']} as Failed")
    except (httpx.HTTPError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"ui-check: cannot render {ui_url}: {exc}", file=sys.stderr)
        return 2
    shown = [n for n in names if n not in result["missing_runs"]]
    print(f"runs page {ui_url}/runs shows {len(shown)}/{len(names)} expected flow runs: {', '.join(shown)}")
    if keys:
        print(f"artifacts page shows {len(keys) - len(result['missing_artifacts'])}/{len(keys)} artifacts")
    print(f"screenshot: {args.screenshot}")
    if failed_task is not None:
        print(f"MISSING: {failed_task}", file=sys.stderr)
    if result["missing_runs"] or result["missing_artifacts"]:
        print(f"MISSING: {json.dumps(result)}", file=sys.stderr)
        return 1
    return 1 if failed_task is not None else 0


if __name__ == "__main__":
    sys.exit(main())
