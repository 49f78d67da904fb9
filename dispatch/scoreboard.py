"""The scoreboard (php-fpm's and uWSGI's way): one fixed-size slot per child in shared memory, so a child
reports each request without a system call and the manager reads the slots when it needs them.

A memfd holds the slots; children are exec'd, so they map it through an inherited file descriptor."""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass

# state, requests, busy since (epoch seconds), length of the request line, the request line
SLOT = struct.Struct("!BQdH300s")
IDLE, BUSY, LEAVING = 1, 2, 3  # LEAVING: finishing its connections, taking no new ones


@dataclass(frozen=True)
class Slot:
    state: int
    requests: int
    since: float
    request: str


class Scoreboard:
    def __init__(self, slots: int, fd: int | None = None) -> None:
        self.slots = slots
        if fd is None:
            fd = os.memfd_create("mtdispatch-scoreboard", 0)
            os.ftruncate(fd, SLOT.size * slots)
        self.fd = fd
        self.map = mmap.mmap(fd, SLOT.size * slots)

    def write(self, index: int, state: int, requests: int, since: float = 0.0, request: str = "") -> None:
        data = request.encode("utf-8", "replace")[:300]
        SLOT.pack_into(self.map, index * SLOT.size, state, requests, since, len(data), data)

    def read(self, index: int) -> Slot:
        state, requests, since, length, data = SLOT.unpack_from(self.map, index * SLOT.size)
        return Slot(state, requests, since, data[:length].decode("utf-8", "replace"))

    def clear(self, index: int) -> None:
        self.write(index, 0, 0)
