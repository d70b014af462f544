"""Build the configured HRIS from :class:`tenure.settings.HRISSettings`."""

from __future__ import annotations

import httpx

from connectors.hris.bamboohr import BambooHRHRIS
from connectors.hris.csv_export import CSVExportHRIS
from connectors.http import api_client_from
from connectors.protocols import HRIS
from tenure.settings import HRISSettings, reveal

__all__ = ["build_hris", "bamboohr_base_url"]


def bamboohr_base_url(settings: HRISSettings) -> str:
    """``{base_url}{subdomain}/v1/`` — BambooHR's API root for one company (the "companyDomain")."""
    if not settings.subdomain:
        raise ValueError("hris.subdomain (the BambooHR company domain) is required for kind=bamboohr")
    return f"{settings.base_url.rstrip('/')}/{settings.subdomain.strip('/')}/v1/"


def build_hris(settings: HRISSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> HRIS:
    """The HRIS named by ``settings.kind``. For BambooHR the API key is revealed here, at the moment of use,
    sent as the Basic-auth user name with ``x`` as password, and registered for redaction."""
    if settings.kind == "csv":
        return CSVExportHRIS(settings.path, settings.column_map or None)
    if settings.kind == "bamboohr":
        api_key = reveal(settings.api_key)
        if not api_key:
            raise ValueError("hris.api_key is required for kind=bamboohr")
        api = api_client_from(
            settings,
            base_url=bamboohr_base_url(settings),
            source="bamboohr",
            auth=(api_key, "x"),
            secrets=[api_key],
            transport=transport,
        )
        return BambooHRHRIS(api)
    raise ValueError(f"unknown HRIS kind {settings.kind!r}")  # pragma: no cover - Literal guards it
