"""Public ids: UUID version 7 strings that sort by their creation time."""

import time
import uuid

from openmmp.kit.ids import canonical_public_id, new_public_id


def test_a_new_id_is_a_canonical_uuid_of_version_7_and_the_rfc_variant() -> None:
    value = new_public_id()
    parsed = uuid.UUID(value)
    assert str(parsed) == value == canonical_public_id(value)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_its_first_48_bits_are_the_unix_milliseconds_of_its_creation() -> None:
    before = time.time_ns() // 1_000_000
    value = new_public_id()
    after = time.time_ns() // 1_000_000
    assert before <= uuid.UUID(value).int >> 80 <= after


def test_ids_of_later_milliseconds_sort_after_earlier_ones() -> None:
    first = new_public_id()
    time.sleep(0.002)
    second = new_public_id()
    assert first < second


def test_ids_of_the_same_millisecond_differ_in_their_random_bits() -> None:
    values = [new_public_id() for _ in range(100_000)]
    assert len(set(values)) == len(values)
    random_bits = {uuid.UUID(v).int & ((1 << 74) - 1) for v in values[:1000]}
    assert len(random_bits) == 1000
