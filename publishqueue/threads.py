"""Thread pools for the publisher's disk and network waits, started on first use."""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor


class LazyPool:
    """A ThreadPoolExecutor started on first use; a forked child (runfcgi's) starts its own, since it has none of
    its parent's threads."""

    def __init__(self, size: int, prefix: str) -> None:
        self.size, self.prefix = size, prefix
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def get(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix=self.prefix)
            return self._executor

    def _forget(self) -> None:
        self._executor = None
        self._lock = threading.Lock()
