"""``tenure webhook serve``: run the HRIS webhook receiver under uvicorn (the main CLI adds this sub-app)."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["app"]

app = typer.Typer(
    help="The HRIS webhook receiver (BambooHR and generic signed webhooks).", no_args_is_help=True
)


@app.callback()
def _webhook() -> None:
    """The HRIS webhook receiver."""


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default: TENURE_WEBHOOK__HOST).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (default: TENURE_WEBHOOK__PORT).")] = None,
) -> None:
    """Serve POST /webhooks/bamboohr, /webhooks/hibob, /webhooks/generic and GET /healthz until interrupted,
    with read timeouts and a connection cap (TENURE_WEBHOOK__HEADER_TIMEOUT_SECONDS, __BODY_TIMEOUT_SECONDS,
    __MAX_CONNECTIONS)."""
    from deployments import webhook_server
    from deployments.webhook import create_app
    from tenure.settings import load_settings

    settings = load_settings()
    webhook = settings.webhook
    if webhook.secret is None and webhook.bamboohr_secret is None and webhook.hibob_secret is None:
        typer.echo(
            "warning: no webhook secret configured (TENURE_WEBHOOK__SECRET); every request will get 401",
            err=True,
        )
    webhook_server.serve(
        create_app(settings),
        host=host or settings.webhook.host,
        port=port or settings.webhook.port,
        settings=settings.webhook,
    )
