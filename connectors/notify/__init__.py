"""Notifiers (:class:`connectors.protocols.Notifier`): e-mail over SMTP, an incoming webhook."""

from connectors.notify.smtp import SMTPNotifier
from connectors.notify.webhook import WebhookNotifier

__all__ = ["SMTPNotifier", "WebhookNotifier"]
