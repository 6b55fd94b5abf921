"""What companies are billed for: channel summaries (and, next, the billing CDR export)."""
