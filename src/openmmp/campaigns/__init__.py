"""Bulk campaigns (api.md §4.6): campaigns, their contacts, their sending and its progress."""
