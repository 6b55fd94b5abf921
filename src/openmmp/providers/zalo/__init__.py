"""Zalo: Official Account messages to followers (ZALO) and ZNS template messages by phone (ZALO_ZNS)."""
