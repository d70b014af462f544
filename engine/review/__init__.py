"""Access reviews: :mod:`~engine.review.run` (findings, auto-remediation, campaign creation),
:mod:`~engine.review.campaign` (decisions and the evidence export) and :mod:`~engine.review.deadline`
(reminders, escalations, the deadline rule). Every change goes through :class:`engine.applier.Applier`."""

from __future__ import annotations

from engine.review.campaign import (
    AUTO_REVIEWER,
    DEADLINE_ACTOR,
    EXPORT_FIELDS,
    ReviewError,
    campaign_reference,
    decide,
    export_rows,
)
from engine.review.deadline import DeadlineReport, process_deadlines
from engine.review.run import (
    Inventory,
    ReviewRun,
    collect_inventory,
    collector_paused,
    load_approvals,
    run_review,
)

__all__ = [
    "AUTO_REVIEWER",
    "DEADLINE_ACTOR",
    "EXPORT_FIELDS",
    "DeadlineReport",
    "Inventory",
    "ReviewError",
    "ReviewRun",
    "campaign_reference",
    "collect_inventory",
    "collector_paused",
    "decide",
    "export_rows",
    "load_approvals",
    "process_deadlines",
    "run_review",
]
