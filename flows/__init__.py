"""Prefect flows: fetch → decide → apply → audit. No HTTP and no business rules here."""
