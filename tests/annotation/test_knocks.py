"""The learning loop's knocks leave from a thread of the process: every label still knocks after its commit."""

import logging
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from annotation.services.knocks import KnockSender

ROOT = Path(__file__).resolve().parents[2]


class Broker:
    """Records what was sent; `hold()` keeps the next send waiting until `release()`."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.sending = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def send(self, project_id: int) -> None:
        self.sending.set()
        self.gate.wait(10)
        self.sent.append(project_id)


def test_a_knock_is_sent_for_its_project():
    sender, broker = KnockSender(), Broker()
    sender.knock(3, broker.send)
    assert sender.flush()
    assert broker.sent == [3]


def test_knocks_that_arrive_while_one_is_sent_go_out_once_per_project_after_it():
    sender, broker = KnockSender(), Broker()
    broker.hold()
    sender.knock(1, broker.send)
    assert broker.sending.wait(5)  # the first knock is with the broker now
    for project_id in (1, 2, 1, 2, 1):
        sender.knock(project_id, broker.send)
    broker.release()
    assert sender.flush()
    # The first, then one for each project that knocked meanwhile: the last label of each is announced.
    assert broker.sent[0] == 1 and sorted(broker.sent[1:]) == [1, 2]


def test_knocks_within_the_gathering_window_go_out_once_per_project_without_a_flush():
    sender, broker = KnockSender(gather_seconds=0.3), Broker()
    for project_id in (1, 2, 1, 1, 2):
        sender.knock(project_id, broker.send)
    deadline = time.monotonic() + 5
    while len(broker.sent) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # nothing more comes
    assert sorted(broker.sent) == [1, 2]


def test_flush_does_not_wait_for_the_gathering_window():
    sender, broker = KnockSender(gather_seconds=30), Broker()
    sender.knock(4, broker.send)
    started = time.monotonic()
    assert sender.flush(timeout=5)
    assert broker.sent == [4] and time.monotonic() - started < 5


def test_a_broker_failure_is_logged_and_later_knocks_still_go_out(caplog):
    sender, sent = KnockSender(), []

    def refuse(project_id):
        raise ConnectionError("broker down")

    with caplog.at_level(logging.ERROR):
        sender.knock(7, refuse)
        assert sender.flush()
    assert "project 7" in caplog.text
    sender.knock(7, sent.append)
    assert sender.flush()
    assert sent == [7]


def test_flush_sends_what_is_left_itself_when_the_thread_does_not_finish_in_time():
    sender, broker, late = KnockSender(), Broker(), []
    broker.hold()
    sender.knock(1, broker.send)
    assert broker.sending.wait(5)
    sender.knock(2, late.append)
    assert not sender.flush(timeout=0.2)  # the knock for 1 is still with the broker
    assert late == [2]  # but the one for 2 went out from here
    broker.release()
    assert sender.flush()
    assert broker.sent == [1]


def test_a_process_that_exits_sends_its_pending_knocks_first(tmp_path):
    """gunicorn's workers leave through sys.exit (a restart, max-requests, a reload): no knock stays behind."""
    record = tmp_path / "sent.txt"
    script = textwrap.dedent(
        f"""
        import sys, threading, time
        from annotation.services.knocks import knocks

        first_sent = threading.Event()

        def send(project_id):
            time.sleep(0.3)  # a slow broker: the process asks to exit while this is in flight
            with open({str(record)!r}, "a") as out:
                out.write(f"{{project_id}}\\n")
            first_sent.set()

        knocks.knock(1, send)
        time.sleep(knocks.gather_seconds + 0.1)  # the thread is sending the first knock now
        knocks.knock(2, send)
        knocks.knock(1, send)
        sys.exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=30)
    sent = record.read_text().split()
    assert sent[0] == "1" and sorted(sent[1:]) == ["1", "2"]


def test_a_forked_process_sends_its_own_knocks(tmp_path):
    """With gunicorn's --preload the master may have knocked before forking; a worker starts its own thread."""
    record = tmp_path / "sent.txt"
    script = textwrap.dedent(
        f"""
        import os, sys
        from annotation.services.knocks import knocks

        def send(project_id):
            with open({str(record)!r}, "a") as out:
                out.write(f"{{os.getpid()}} {{project_id}}\\n")

        knocks.knock(1, send)
        knocks.flush()
        child = os.fork()
        if child == 0:
            knocks.knock(2, send)
            sys.exit(0)
        os.waitpid(child, 0)
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=30)
    lines = [line.split() for line in record.read_text().splitlines()]
    assert [project for _, project in lines] == ["1", "2"]
    assert lines[0][0] != lines[1][0]
