"""Prefect flows: fetch → decide → apply → audit. No HTTP and no business rules here.

Loading any flow loads every vendor connector (:func:`tenure.compose.load_vendor_connectors`): never imported on
first use inside a running flow, where another thread of the run may be compiling code.
"""

from tenure.compose import load_vendor_connectors

load_vendor_connectors()
