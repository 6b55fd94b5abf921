"""Public identifiers: UUID strings, the only ids that appear on the wire."""

import uuid


def new_public_id() -> str:
    return str(uuid.uuid4())


def canonical_public_id(value: str) -> str | None:
    """The canonical form of a public id, or None when `value` cannot be one (so it matches nothing)."""
    if len(value) > 40:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None
