"""The learning loop's knocks, sent from a thread of the web process instead of the reviewer's request.

A knock (`learning.tasks.labels_changed(project_id)`) is a broker publish plus Celery's task-sent event: one or
two round trips that the reviewer whose answer is already committed need not wait for. The knock only says
"this project's labels changed"; the task reads the labels themselves from the database, so knocks for one
project within a short gathering window (`GATHER_SECONDS`), or while one is being sent, are sent once: one
knock after the last commit is all the loop needs, and under a full team's load this saves most of the
publishes. Pending knocks are sent before the process exits (gunicorn's workers exit through `sys.exit`, so
`atexit` runs); a process killed outright loses at most the knocks of its last few milliseconds, as a broker
outage loses a knock today, and the project's next label knocks again.
"""

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

Send = Callable[[int], object]

# How long the thread collects knocks before it sends: at 16 reviewers' full speed a web process gets a label
# every 25-50 ms, so several share one publish; the learning loop hears of a label this much later at most.
GATHER_SECONDS = 0.2


class KnockSender:
    """Per-process: `knock(project_id, send)` returns at once; a daemon thread calls `send(project_id)`,
    one call per project for all the knocks that arrived within `gather_seconds` or while it was busy."""

    def __init__(self, gather_seconds: float = GATHER_SECONDS) -> None:
        self.gather_seconds = gather_seconds
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked worker starts its own thread when it knocks
        atexit.register(self.flush)

    def _reset(self) -> None:
        self._condition = threading.Condition()
        self._pending: dict[int, Send] = {}
        self._sending = False
        self._flushing = 0  # callers of flush() waiting: send at once, without gathering
        self._thread: threading.Thread | None = None

    def knock(self, project_id: int, send: Send) -> None:
        with self._condition:
            self._pending[project_id] = send
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="docket-learning-knocks", daemon=True)
                self._thread.start()
            self._condition.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every knock so far has been sent (at exit, and in tests); False if `timeout` ran out,
        in which case what is still pending is sent here, in the caller's thread."""
        deadline = time.monotonic() + timeout
        with self._condition:
            self._flushing += 1
            self._condition.notify_all()
            try:
                while self._pending or self._sending:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._thread is None or not self._thread.is_alive():
                        break
                    self._condition.wait(left)
                else:
                    return True
            finally:
                self._flushing -= 1
            left_over, self._pending = self._pending, {}
        _send_all(left_over)
        return not left_over

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._pending:
                    self._condition.wait()
                send_at = time.monotonic() + self.gather_seconds
                while not self._flushing and (left := send_at - time.monotonic()) > 0:
                    self._condition.wait(left)
                batch, self._pending = self._pending, {}
                self._sending = True
            try:
                _send_all(batch)
            finally:
                with self._condition:
                    self._sending = False
                    self._condition.notify_all()


def _send_all(batch: dict[int, Send]) -> None:
    for project_id, send in batch.items():
        send_now(project_id, send)


def send_now(project_id: int, send: Send) -> None:
    """Send one knock in this thread. The labels are committed by then, so a broker that is down or refuses is
    logged, never raised: the next label knocks again."""
    try:
        send(project_id)
    except Exception:
        logger.exception("Could not tell the learning loop that project %s has new labels", project_id)


knocks = KnockSender()
