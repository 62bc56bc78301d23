"""Notifications: Go-template payloads, webhooks and Telegram."""
