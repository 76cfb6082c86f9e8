"""The collector's policy, set at an entry point: what survives a collection is frozen, once."""

from __future__ import annotations

import gc

from engine.memory import _freeze_survivors, hold_long_lived_state


def test_survivors_of_a_collection_are_frozen_and_the_policy_is_set_once():
    was = list(gc.callbacks)
    try:
        hold_long_lived_state()
        hold_long_lived_state()
        assert gc.callbacks.count(_freeze_survivors) == 1
        gc.unfreeze()
        kept = [object() for _ in range(10)]
        gc.collect(1)
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.callbacks[:] = was
        gc.unfreeze()
