"""kit/heap.py: what exists at the call is left out of the collector's passes (later objects are not),
and young passes come less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from openmmp.kit.heap import freeze_startup_heap


@pytest.fixture
def unfrozen_afterwards() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("unfrozen_afterwards")
def test_the_start_up_heap_is_frozen_and_later_cycles_are_still_collected() -> None:
    built_at_start_up: list[object] = [{"route": n} for n in range(1000)]
    freeze_startup_heap()
    assert gc.get_freeze_count() >= len(built_at_start_up)
    assert gc.get_threshold()[0] == 10_000  # young passes every 10,000 new containers, not 700
    oldest = {id(o) for o in gc.get_objects(2)}  # what a full pass walks: the frozen are not there
    assert not any(id(o) in oldest for o in built_at_start_up)

    class Node:
        other: object

    def make_cycle() -> None:
        a, b = Node(), Node()
        a.other, b.other = b, a

    before = gc.get_freeze_count()
    make_cycle()
    assert gc.collect() >= 2  # the cycle made after the freeze is found and freed
    assert gc.get_freeze_count() == before
