"""Facebook Messenger Platform, Send API (Meta): `applicationId` 6."""
