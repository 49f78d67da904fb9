"""When a queue worker's cyclic garbage collector traverses everything (a full collection).

A worker keeps much for a long time: the entries it loaded (``BLOG["ENTRY_CACHE_MB"]``), formatted dates, rendered
fragments. Python's collector, left alone, traversed all of it in every full collection, which its thresholds
ran every couple of seconds while those caches grew: measured in the freshness bench (PostgreSQL, two workers
draining rebuilds for 70 s), 28 and 31 full collections per worker of 50-70 ms each (1.5-1.6 s), each a stall
that hit whatever the worker did, an urgent page included.

Instead, at a safe point between batches (no job in hand waiting for it, none of a higher priority known to be
waiting), at most every ``INTERVAL`` seconds, the worker runs one full collection and then freezes what survived
it (``gc.freeze``: moved out of the collector's generations), so that the collections its thresholds start until
the next safe point traverse only what is newer. Frozen objects are still freed by reference counting; only a
cycle among them that became garbage waits for the next safe point (``gc.unfreeze`` first), at most about
``INTERVAL`` seconds, instead of being found at once.
"""
from __future__ import annotations

import gc
import time
from collections.abc import Callable

INTERVAL = 30.0


class Collector:
    def __init__(self, interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.next_at = clock()  # the first safe point: what loading and the first batch left gets frozen
        self.passes = 0

    def safe_point(self) -> bool:
        """Call between batches; True when it ran a full collection now."""
        if not gc.isenabled() or self.clock() < self.next_at:
            return False
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.passes += 1
        self.next_at = self.clock() + self.interval
        return True

    def release(self) -> None:
        """The worker stops: what it froze goes back to the collector (the process may go on, e.g. a test's)."""
        if self.passes:
            gc.unfreeze()
