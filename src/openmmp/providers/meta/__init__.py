"""What Meta's products share: WhatsApp's Cloud API and the Messenger Platform are both the Graph API.

Their channels act through a Meta app whose secret signs the webhooks (`webhooks`), their calls are
answered alike, errors in the same envelope (`graph`), and their simulators share the Graph API's
plumbing (`simulator`). Each product keeps its own codes, limits and words in its package.
"""
