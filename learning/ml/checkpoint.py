"""Checkpoints of a body fine-tune, so a worker restarted mid fine-tune resumes near where it stopped.

Every `every_steps` steps (and when the process is asked to stop) the body is saved to a directory with the
number of steps done and a fingerprint of what is being trained (texts, targets, steps, settings, starting
body). A later attempt with the same fingerprint loads that body and trains only the remaining steps.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

stop_requested = threading.Event()
"""Set by the worker's SIGTERM handler (config/celery.py): save a checkpoint at the next step and stop."""

STATE_FILE = "checkpoint.json"
BODY_DIR = "body"


@dataclass
class FineTuneCheckpoint:
    directory: Path
    every_steps: int = 10

    def resume_point(self, fingerprint: str) -> int:
        """Steps already done by an earlier attempt at this very fine-tune; 0 when there is none to resume."""
        try:
            state = json.loads((Path(self.directory) / STATE_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return 0
        if state.get("fingerprint") != fingerprint or not (Path(self.directory) / BODY_DIR).is_dir():
            return 0
        return int(state.get("steps_done", 0))

    def body_path(self) -> Path:
        return Path(self.directory) / BODY_DIR

    def save(self, body: Any, *, fingerprint: str, steps_done: int, steps: int) -> None:
        """Write the body beside the last checkpoint, then swap it in: a crash mid-save keeps the previous one."""
        directory = Path(self.directory)
        directory.mkdir(parents=True, exist_ok=True)
        scratch = directory / f"{BODY_DIR}.{os.getpid()}.partial"
        shutil.rmtree(scratch, ignore_errors=True)
        body.save(str(scratch))
        old = directory / f"{BODY_DIR}.old"
        shutil.rmtree(old, ignore_errors=True)
        if self.body_path().exists():
            os.replace(self.body_path(), old)
        os.replace(scratch, self.body_path())
        state = {"fingerprint": fingerprint, "steps_done": steps_done, "steps": steps}
        tmp = directory / f"{STATE_FILE}.partial"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, directory / STATE_FILE)
        shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
