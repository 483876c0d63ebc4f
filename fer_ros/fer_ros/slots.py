"""The two one-frame mailboxes of a two-stage frame pipeline (fer_node's workers, the bench's model of them):
`LatestFrame`, where a newer frame replaces one not yet taken, and `Handoff`, the frame between the two stages.
Plain threading, no ROS."""
from __future__ import annotations

import threading


class LatestFrame:
    """A one-slot mailbox: `put` replaces the stored frame (returns True when that dropped an unprocessed one),
    `take` waits for a frame and empties the slot. Memory: one message, whatever the input rate."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item = None
        self._closed = False

    def put(self, item) -> bool:
        with self._cond:
            dropped = self._item is not None
            self._item = item
            self._cond.notify()
            return dropped

    def take(self, timeout_s: float):
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout_s)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Handoff:
    """The one frame between the node's two workers. The first waits until the slot is empty (`wait_empty`: the
    second has taken the last frame) before it starts on the next frame, then `put`s it; the second `take`s it.
    So at most two frames are in the node at a time: one in each stage."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item = None

    def wait_empty(self, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._item is None, timeout_s)

    def put(self, item) -> None:
        with self._cond:
            if self._item is not None:
                raise RuntimeError("Handoff.put: the slot still holds a frame; wait_empty first")
            self._item = item
            self._cond.notify_all()

    def take(self, timeout_s: float):
        with self._cond:
            if not self._cond.wait_for(lambda: self._item is not None, timeout_s):
                return None
            item, self._item = self._item, None
            self._cond.notify_all()
            return item
