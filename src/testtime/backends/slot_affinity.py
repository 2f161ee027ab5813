"""Slot affinity: send a request to the engine slot that already holds the most of its prompt.

llama.cpp keeps each slot's last prompt and reply in that slot's KV cache. Tree search sends
a beam's next step as the beam's text so far, byte for byte, but with many requests in flight
the engine's own choice of slot (least recently used, or the idle slot with the most similar
prompt) often lands it in a slot that holds some other beam: every request of one problem
shares the question, so a sibling's slot looks as similar as the parent's. The backend
therefore remembers what each slot holds and pins every call to the idle slot with the
longest common prefix (``id_slot``), the least recently used one among equals.
"""

from __future__ import annotations

import threading


def common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of ``a`` and ``b``."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class SlotAffinity:
    """What each slot holds, as text, and which slots a call of ours occupies now."""

    def __init__(self, slots: int) -> None:
        self._held = [""] * slots
        self._busy = [False] * slots
        self._used = [0] * slots
        self._clock = 0
        self._lock = threading.Lock()

    def take(self, prompt: str) -> int:
        """Occupy and return the idle slot whose text shares the longest prefix with
        ``prompt`` (least recently used among equals); -1 when every slot is occupied."""
        with self._lock:
            idle = [i for i, busy in enumerate(self._busy) if not busy]
            if not idle:
                return -1
            best = max(idle, key=lambda i: (common_prefix(self._held[i], prompt),
                                            -self._used[i]))
            self._busy[best] = True
            self._clock += 1
            self._used[best] = self._clock
            return best

    def give_back(self, slot: int, held: str) -> None:
        """Free ``slot``, which now holds ``held`` (its prompt and the reply generated)."""
        if slot < 0:
            return
        with self._lock:
            self._held[slot] = held
            self._busy[slot] = False
