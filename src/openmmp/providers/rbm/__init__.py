"""RCS Business Messaging (Google RBM): agent messages, the service account token flow, webhooks."""
