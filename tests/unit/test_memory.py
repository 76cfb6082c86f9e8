"""The collector's policy after a batch: young garbage collected, the survivors frozen."""

from __future__ import annotations

import gc
import weakref

from engine.memory import settle


class Node:
    pass


def test_settle_frees_dropped_cycles_and_freezes_what_lives():
    try:
        gc.unfreeze()
        dropped = Node()
        dropped.me = dropped  # a cycle, dropped before the batch ends
        gone = weakref.ref(dropped)
        del dropped
        kept = [Node() for _ in range(100)]
        settle()
        assert gone() is None
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()
