"""Viber Business Messages (applicationId 1): client, callback parser, error mapping and simulator."""
