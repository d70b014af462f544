"""The engine: load context → plan (pure, :mod:`lifecycle`) → apply through the one door.

- :mod:`engine.applier`: the one door — the only writer of ledger and audit rows.
- :mod:`engine.reconcile`: one employee; :mod:`engine.sync`: everyone, reads in bulk.
- :mod:`engine.review`: access reviews (run, campaign, deadline); :mod:`engine.kpi`: the shared numbers.
- :mod:`engine.locks`: one person at a time, across processes and workers.

Plain async, no Prefect and no settings: the flows and the CLI build the connectors (:mod:`tenure.compose`) and
pass them in.
"""
