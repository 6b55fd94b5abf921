"""WhatsApp Business Platform, Cloud API (Meta): `applicationId` 11."""
