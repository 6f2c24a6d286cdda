"""The web workers' torch threads stop spinning soon after a prediction, unless the operator says otherwise."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SHOW = "import os, config.wsgi; print(os.environ['GOMP_SPINCOUNT'])"


def spin_count_in_web_process(**environment: str) -> str:
    env = {key: value for key, value in os.environ.items() if key != "GOMP_SPINCOUNT"}
    env.update(DOCKET_DEVELOPMENT="1", DOCKET_WARM_MODELS="0", **environment)
    done = subprocess.run([sys.executable, "-c", SHOW], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(("given", "expected"), [({}, "10000"), ({"GOMP_SPINCOUNT": "300000"}, "300000")])
def test_web_process_shortens_the_openmp_spin_unless_set(given, expected):
    assert spin_count_in_web_process(**given) == expected


def test_torch_is_not_loaded_before_the_spin_count_is_set():
    # libgomp reads GOMP_SPINCOUNT once, when torch loads it: config.wsgi must run before anything imports torch.
    done = subprocess.run(
        [sys.executable, "-c", "import sys, config.wsgi; print('torch' in sys.modules)"],
        cwd=ROOT,
        env={**os.environ, "DOCKET_DEVELOPMENT": "1", "DOCKET_WARM_MODELS": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
