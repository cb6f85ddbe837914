"""Start-up is frozen out of the collector's sight, after its garbage is collected."""

from __future__ import annotations

import gc
import weakref

from services.gc_pauses import freeze_start_up


class Node:
    """A reference cycle: only the cycle collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_start_up_garbage_is_collected_before_the_rest_is_frozen() -> None:
    garbage = weakref.ref(Node())
    kept = Node()
    assert garbage() is not None, "a cycle outlives its last reference until a collection"
    freeze_start_up()
    try:
        assert garbage() is None, "frozen, the cycle would have stayed for good"
        assert gc.is_tracked(kept) and kept not in gc.get_objects(), "what lives on is frozen"
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
