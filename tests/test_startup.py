"""What a web process pays to start: loading the URLs must not load the model stack."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys
import django
django.setup()
import config.urls  # every view module, as a web worker imports them
heavy = sorted(n for n in ("torch", "setfit", "sentence_transformers", "transformers", "modAL") if n in sys.modules)
print(",".join(heavy))
"""


def test_loading_the_urls_does_not_import_torch_or_setfit():
    # A fresh interpreter: the test process itself has long imported everything.
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True
    )
    assert result.stdout.strip() == "", f"web processes would import {result.stdout.strip()} at start"
