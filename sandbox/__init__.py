"""Sandbox: the embedded demo setup and vendor-shaped fakes for systems that cannot run here."""
