"""Telegram Bot API (applicationId 5): client, update parser, error mapping and simulator."""
