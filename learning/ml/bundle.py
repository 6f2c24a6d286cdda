"""A model bundle: one directory that scores text anywhere, without Docket.

The directory is the model in SetFit's own format (`SetFitModel.from_pretrained(bundle)` loads it) plus three
files: `labels.json` (the label map: output column -> key and name), `manifest.json` (project, model version,
taxonomy version, per-label thresholds, what made it) and `SHA256SUMS` (every other file, as `sha256sum -c`
reads it). Plain Python, no Django: Spark executors read bundles with this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUNDLE_FORMAT = "docket-model-bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LABEL_MAP = "labels.json"
CHECKSUMS = "SHA256SUMS"
DOCKET_METADATA = "docket.json"  # written by learning.ml.classifier beside SetFit's files
DECISION_THRESHOLD = 0.5
"""Each label's tuned threshold is folded into its head, so every probability is compared with 0.5."""


class BundleInvalid(Exception):
    """A directory that is not a complete, unaltered model bundle (missing file, wrong checksum, other format)."""


@dataclass(frozen=True)
class Bundle:
    """What a scorer needs to know about a bundle besides the model itself."""

    path: Path
    project: dict[str, Any]
    model_version: int
    taxonomy_version: int
    multi_label: bool
    label_keys: list[str]
    label_names: list[str]
    thresholds: dict[str, float]

    def decide(self, probabilities: Any) -> list[list[str]]:
        """Predicted label keys per row: every label at or above 0.5 (multi-label), else the argmax."""
        import numpy as np

        rows = np.asarray(probabilities)
        if self.multi_label:
            return [[self.label_keys[j] for j in np.flatnonzero(row >= DECISION_THRESHOLD)] for row in rows]
        return [[self.label_keys[int(np.argmax(row))]] for row in rows]


def bundle_write(
    *,
    model_dir: Path,
    out_dir: Path,
    project: dict[str, Any],
    model_version: int,
    taxonomy_version: int,
    labels: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Copy a saved Docket model into `out_dir` as a bundle; `out_dir` must not exist or be empty.

    `labels` are the model's outputs in order, each {"key", "name", ...}. The bundle is assembled beside
    `out_dir` and renamed into place, so a reader never sees half of one.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    metadata_path = model_dir / DOCKET_METADATA
    if not metadata_path.is_file():
        raise BundleInvalid(f"{model_dir} holds no saved Docket model ({DOCKET_METADATA} is missing).")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} already exists and is not empty; choose a new directory.")
    metadata = json.loads(metadata_path.read_text())
    keys = [label["key"] for label in labels]
    if keys != list(metadata["labels"]):
        raise BundleInvalid(f"the labels given ({keys}) are not the model's outputs ({metadata['labels']}).")
    thresholds = list(metadata.get("thresholds") or [DECISION_THRESHOLD] * len(keys))
    manifest = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "project": project,
        "model_version": model_version,
        "taxonomy_version": taxonomy_version,
        "multi_label": bool(metadata["multi_label"]),
        "label_keys": keys,
        "decision_threshold": DECISION_THRESHOLD,
        "thresholds": dict(zip(keys, thresholds, strict=True)),
        "thresholds_folded_into_head": True,
        "base_model": metadata.get("base_model", ""),
        "body_id": metadata.get("body_id", ""),
        "load_with": "setfit.SetFitModel.from_pretrained(<this directory>)",
        "checksums": CHECKSUMS,
        **(extra or {}),
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        shutil.copytree(model_dir, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
        label_map = [{"index": index, **label} for index, label in enumerate(labels)]
        (staging / LABEL_MAP).write_text(json.dumps(label_map, indent=2, ensure_ascii=False) + "\n")
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        lines = [f"{digest}  {name}" for name, digest in file_checksums(staging).items() if name != CHECKSUMS]
        (staging / CHECKSUMS).write_text("\n".join(lines) + "\n")
        if out_dir.exists():
            out_dir.rmdir()
        os.rename(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def file_checksums(directory: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `directory`, sorted by path."""
    directory = Path(directory)
    sums = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        sums[path.relative_to(directory).as_posix()] = digest.hexdigest()
    return sums


def bundle_read(path: str | Path, *, verify: bool = True) -> Bundle:
    """The bundle's manifest and label map; with `verify`, refuses a bundle whose files do not match SHA256SUMS."""
    path = Path(path)
    manifest_path, checksums_path = path / MANIFEST, path / CHECKSUMS
    if not manifest_path.is_file() or not checksums_path.is_file():
        raise BundleInvalid(f"{path} is not a model bundle: {MANIFEST} or {CHECKSUMS} is missing.")
    if verify:
        expected = {}
        for line in checksums_path.read_text().splitlines():
            digest, _, name = line.partition("  ")
            expected[name] = digest
        actual = {name: digest for name, digest in file_checksums(path).items() if name != CHECKSUMS}
        differing = sorted(name for name in expected.keys() | actual.keys() if expected.get(name) != actual.get(name))
        if differing:
            raise BundleInvalid(f"{path} does not match its {CHECKSUMS}: {', '.join(differing[:5])}")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != BUNDLE_FORMAT or manifest.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise BundleInvalid(f"{path} has format {manifest.get('format')!r} {manifest.get('format_version')!r}.")
    label_map = json.loads((path / LABEL_MAP).read_text())
    return Bundle(
        path=path,
        project=manifest["project"],
        model_version=int(manifest["model_version"]),
        taxonomy_version=int(manifest["taxonomy_version"]),
        multi_label=bool(manifest["multi_label"]),
        label_keys=[label["key"] for label in label_map],
        label_names=[label["name"] for label in label_map],
        thresholds=manifest["thresholds"],
    )
