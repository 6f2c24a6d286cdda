"""The suite's own database flush outlasts a deadlock with a worker still ending the last test's task."""

import psycopg2
import pytest

from tests.conftest import _execute_outlasting_deadlocks


class _CursorThatDeadlocks:
    def __init__(self, times: int) -> None:
        self.times = times
        self.executed: list[str] = []

    def execute(self, statement: str) -> None:
        if self.times:
            self.times -= 1
            raise psycopg2.errors.DeadlockDetected("deadlock detected")
        self.executed.append(statement)


def test_flush_runs_again_after_being_a_deadlocks_victim(monkeypatch):
    monkeypatch.setattr("tests.conftest.time.sleep", lambda seconds: None)
    cursor = _CursorThatDeadlocks(times=2)
    _execute_outlasting_deadlocks(cursor, "TRUNCATE a, b;")
    assert cursor.executed == ["TRUNCATE a, b;"]


def test_flush_gives_up_after_its_attempts(monkeypatch):
    monkeypatch.setattr("tests.conftest.time.sleep", lambda seconds: None)
    with pytest.raises(psycopg2.errors.DeadlockDetected):
        _execute_outlasting_deadlocks(_CursorThatDeadlocks(times=9), "TRUNCATE a;", attempts=3)
