"""Viber REST Bot API (applicationId 10): client, callback parser, error mapping and simulator."""
