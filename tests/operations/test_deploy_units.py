"""deploy/: the units name their worker nodes, fit a fine-tune, and run what docs/deploy.md documents."""

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DEPLOY = ROOT / "deploy"


def unit(name: str) -> dict[str, str]:
    values = {}
    for line in (DEPLOY / f"{name}.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def seconds(value: str) -> int:
    return int(value.rstrip("s"))


def gigabytes(value: str) -> float:
    number, suffix = float(value[:-1]), value[-1]
    return number / 1024 if suffix == "M" else number


def test_the_two_workers_have_node_names_of_their_own_so_both_start_on_one_host():
    names = []
    for name in ("docket-worker", "docket-training"):
        args = shlex.split(unit(name)["ExecStart"])
        names.append(args[args.index("-n") + 1])
    assert len(set(names)) == 2 and all(n.endswith("@%%h") for n in names), names


def test_the_training_worker_serves_fine_tunes_alone_with_room_for_one_and_time_to_checkpoint():
    training = unit("docket-training")
    args = shlex.split(training["ExecStart"])
    assert args[args.index("-Q") + 1] == "training" and "--concurrency=1" in args
    assert gigabytes(training["MemoryMax"]) >= 2.1 + 1  # a 2.1 GB fine-tune plus the main process and headroom
    assert seconds(training["TimeoutStopSec"]) >= 60  # a step (~3 s) and a checkpoint save, with margin
    assert training.get("KillMode", "control-group") == "control-group"  # SIGTERM must reach the pool process


def test_the_default_worker_serves_the_fast_loop_and_the_rest():
    args = shlex.split(unit("docket-worker")["ExecStart"])
    assert set(args[args.index("-Q") + 1].split(",")) == {"fast", "celery"}


def test_every_documented_command_is_the_one_its_unit_runs():
    docs = (ROOT / "docs" / "deploy.md").read_text()
    for name in ("docket-web", "docket-worker", "docket-training", "docket-scheduler"):
        command = unit(name)["ExecStart"].replace("/srv/docket/.venv/bin/", ".venv/bin/").replace("%%h", "%h")
        assert f"$ {command}" in docs, f"docs/deploy.md does not show {name}'s command: {command}"


def test_the_env_template_sets_only_variables_docket_reads():
    settings_text = (ROOT / "config" / "settings.py").read_text()
    read = set(re.findall(r'env\.\w+\("([A-Z_0-9]+)"', settings_text)) | {"HF_HUB_OFFLINE"}
    template = [
        line.partition("=")[0]
        for line in (DEPLOY / "docket.env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert set(template) <= read, set(template) - read
