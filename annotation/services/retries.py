"""Calls PostgreSQL may pick as a deadlock's victim, run again instead of failing the reviewer's request.

Two reviewers' statements can wait on each other for a moment: a claim that has locked a document and
inserts its lease, and a submission of that same document that has deleted its lease and marks it labeled
(the claim read the queue before the other reviewer's own claim of it was committed). PostgreSQL then aborts
one of them with SQLSTATE 40P01, and nothing it wrote is kept. The queue's claim and the first answer are single
statements outside any transaction, and every other path here runs in its own `transaction.atomic()`, so the
aborted call can simply be made again: it reads the queue afresh and, for a submission, stores the answer once
(its submission id makes a replay harmless).
"""

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import OperationalError, connection

logger = logging.getLogger(__name__)

DEADLOCK = "40P01"
ATTEMPTS = 4

P = ParamSpec("P")
R = TypeVar("R")


def retrying_deadlocks(function: Callable[P, R]) -> Callable[P, R]:
    """Run `function` again (up to ATTEMPTS times in all, after a few milliseconds) when PostgreSQL aborted it
    as a deadlock's victim. Not inside a caller's transaction: that transaction is aborted as a whole, so the
    error goes to whoever opened it."""

    @functools.wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, ATTEMPTS):
            try:
                return function(*args, **kwargs)
            except OperationalError as error:
                victim = getattr(error.__cause__, "pgcode", None) == DEADLOCK
                if not victim or connection.in_atomic_block:
                    raise
                logger.info("%s was a deadlock's victim (attempt %d); running it again", function.__name__, attempt)
                time.sleep(random.uniform(0.002, 0.01) * attempt)
        return function(*args, **kwargs)  # the last attempt: whatever it raises goes to the caller

    return call
