"""Signs of life of long work (an import, a training run), written by a thread of their own.

The work itself may sit for minutes inside one transaction or one computation; a heartbeat written on a
separate database connection every few seconds lets any worker tell a live job from one whose process was
killed, and end the dead one in seconds instead of at the next label.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

from django.conf import settings
from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)


def heartbeat_seconds() -> float:
    """How often long work writes its heartbeat."""
    return float(getattr(settings, "DOCKET_HEARTBEAT_SECONDS", 5))


def stale_seconds() -> float:
    """A job whose heartbeat is older than this lost its process (a few missed beats, never one slow write)."""
    return float(getattr(settings, "DOCKET_STALE_SECONDS", 30))


class Heartbeat:
    """`with Heartbeat(beat):` calls `beat()` every few seconds from a thread until the block ends.

    `beat` writes a timestamp with a conditional UPDATE (only while the job is still running and still this
    process's). The thread has its own database connection, so it beats while the job's own connection is
    inside a long transaction; when the database drops that connection, the next beat opens a fresh one.
    """

    def __init__(self, beat: Callable[[], object], *, every: float | None = None, name: str = "heartbeat") -> None:
        self._beat = beat
        self._every = heartbeat_seconds() if every is None else every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Heartbeat:
        if self._every > 0:
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            # A beat stuck on a lock ends with its statement; the daemon thread never outlives the process.
            self._thread.join(timeout=self._every + 5)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._every):
                try:
                    self._beat()
                except DatabaseError:
                    logger.warning("Could not write a heartbeat; trying again on a fresh connection", exc_info=True)
                    connection.close()
        finally:
            connection.close()
