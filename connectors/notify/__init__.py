"""Notifiers (:class:`connectors.protocols.Notifier`): e-mail over SMTP, an incoming webhook, and the router
that sends each message by the channel its address names."""

from connectors.notify.routing import WEBHOOK_ADDRESS, RoutedNotifier
from connectors.notify.smtp import SMTPNotifier
from connectors.notify.webhook import WebhookNotifier

__all__ = ["SMTPNotifier", "WebhookNotifier", "RoutedNotifier", "WEBHOOK_ADDRESS"]
