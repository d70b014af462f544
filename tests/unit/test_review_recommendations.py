"""Recommendations in the review campaign (engine/review/run.py → lifecycle/recommend.py): each routed item
carries its recommendation and evidence line into the store, the reviewer's ticket and the export; the
decision's audit row says what was recommended and whether it was followed."""

from __future__ import annotations

from sqlmodel import select

from engine.review import decide, export_rows
from models.audit import AuditEvent
from models.db import session_scope
from models.review import ReviewItem
from tests.unit.test_review_campaign import NOW, by_kind, policy, start


async def test_items_ticket_and_export_carry_the_recommendation_and_the_decision_audits_it(
    fresh_sqlite_url: str,
) -> None:
    run, idp, tickets, auditor = await start(fresh_sqlite_url)
    outside, recert, orphan = (
        by_kind(run, "outside_policy"),
        by_kind(run, "recertification"),
        by_kind(run, "orphan"),
    )
    assert run.recommendations[outside.id].advice == "revoke"  # E2 is the only Engineering member of finance
    assert run.recommendations[outside.id].evidence.startswith("0 of 3 peers (Engineering) hold finance; ")
    assert (
        run.recommendations[recert.id].advice == "keep"
        and "approved" in run.recommendations[recert.id].evidence
    )
    assert run.recommendations[orphan.id].advice == "revoke"
    with session_scope(fresh_sqlite_url) as session:
        stored = {i.id: i for i in session.exec(select(ReviewItem)).all()}
    assert (stored[outside.id].recommendation, stored[outside.id].evidence) == (
        "revoke",
        run.recommendations[outside.id].evidence,
    )
    m1_body = next(tickets.bodies[t.id] for t in tickets.tickets.values() if t.reference.endswith("user.m1"))
    assert f"recommended: revoke ({run.recommendations[outside.id].evidence})" in m1_body
    rows = {r["item"]: r for r in export_rows(fresh_sqlite_url, run.campaign_id)}
    assert rows[recert.id]["recommendation"] == "keep" and rows[recert.id]["evidence"]

    common = dict(
        database_url=fresh_sqlite_url,
        campaign_id=run.campaign_id,
        idp=idp,
        ticketing=tickets,
        policy=policy(),
        auditor=auditor,
        now=NOW,
    )
    await decide(item_id=outside.id, decision="revoke", by="m1", reason="not needed", **common)
    await decide(item_id=orphan.id, decision="keep", by="it-security", reason="service account", **common)
    with session_scope(fresh_sqlite_url) as session:
        decisions = {
            e.details["item"]: e.details
            for e in session.exec(select(AuditEvent).where(AuditEvent.action == "review.decision")).all()
        }
    assert (decisions[outside.id]["recommended"], decisions[outside.id]["followed"]) == ("revoke", True)
    assert (decisions[orphan.id]["recommended"], decisions[orphan.id]["followed"]) == ("revoke", False)
