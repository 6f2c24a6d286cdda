"""What the taxonomy itself says about each label, as training signal before and beside the reviewers' labels.

A label's name, description and guideline (with its examples) are encoded by the same body as the documents.
Two uses, both measured on OPP-115 under policy-grouped cross-validation (docs/benchmarks.md):

- Before the first label, `zero_shot_probabilities` suggests, for each document, the label whose words lie
  nearest in embedding space, plus any other label almost as near (multi-label).
- Once labels arrive, `anchor_rows` adds each label's text to the head's training data as one extra, weighted
  example of that label, so a label nobody has labelled yet is still known to the model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ZERO_SHOT_MARGIN = 0.06
"""Multi-label: every label whose cosine similarity is within this of the best label's is suggested too."""
ZERO_SHOT_SHARPNESS = 40.0
"""Similarity differences are turned into probabilities by a logistic of this slope (0.06 apart = p 0.92)."""


@dataclass(frozen=True)
class LabelText:
    """One label's own words: its name, what it means, and the guideline reviewers read (with examples)."""

    name: str
    description: str = ""
    guideline: str = ""

    def text(self) -> str:
        """One passage per label: name, description and guideline, markdown stripped, in reading order."""
        parts = [self.name.strip(), self.description.strip(), _plain(self.guideline)]
        return ". ".join(part.rstrip(".") for part in parts if part) + "."


def _plain(markdown: str) -> str:
    """Guideline markdown as plain sentences: emphasis markers and line breaks go, the words stay."""
    text = re.sub(r"[*_`#>]+", "", markdown or "")
    return re.sub(r"\s+", " ", text).strip()


def label_texts_from_file(path: str | Path, labels: Sequence[str]) -> list[LabelText]:
    """Label texts for `labels` (in that order) from a taxonomy JSON file, as `load_demo` reads one.

    The file is `{"labels": [{"key", "name", "description", "guideline"}, ...]}`; a label of the data is
    matched by key or by name. A label the file does not describe keeps its bare name, so a partial
    description file still runs.
    """
    entries = json.loads(Path(path).read_text(encoding="utf-8"))
    entries = entries.get("labels", entries) if isinstance(entries, dict) else entries
    by_name: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        for field in ("key", "name"):
            if entry.get(field):
                by_name[str(entry[field])] = entry
    texts = []
    for label in labels:
        entry = by_name.get(label, {})
        texts.append(
            LabelText(
                name=str(entry.get("name") or label),
                description=str(entry.get("description") or ""),
                guideline=str(entry.get("guideline") or ""),
            )
        )
    return texts


def encode_label_texts(label_texts: Sequence[LabelText], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """(n_labels, dim) unit vectors, one per label, with the body that encodes the documents."""
    vectors = np.asarray(encode([label.text() for label in label_texts]), dtype=np.float32)
    return _unit(vectors)


def zero_shot_probabilities(
    embeddings: np.ndarray,
    label_vectors: np.ndarray,
    multi_label: bool,
    *,
    margin: float = ZERO_SHOT_MARGIN,
    sharpness: float = ZERO_SHOT_SHARPNESS,
) -> np.ndarray:
    """Suggestions with no labelled document: probabilities from cosine similarity to each label's text.

    Multi-label: a label gets p >= 0.5 exactly when its similarity is within `margin` of the document's best
    label (so the best label always applies), falling off logistically below that. Single-label: a softmax
    of the similarities at temperature 1 / `sharpness`. Same shape and meaning as a trained head's output,
    so the queue strategies and the labeling page take them unchanged.
    """
    similarity = _unit(np.asarray(embeddings, dtype=np.float64)) @ np.asarray(label_vectors, dtype=np.float64).T
    if multi_label:
        cut = similarity.max(axis=1, keepdims=True) - margin
        return 1.0 / (1.0 + np.exp(-sharpness * (similarity - cut)))
    logits = sharpness * (similarity - similarity.max(axis=1, keepdims=True))
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def anchor_rows(label_vectors: np.ndarray, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each label's text as one training example of that label: (embeddings, targets) to add to a head's data.

    Multi-label targets are one-hot rows (the text of "Data Security" is an example of that label and of no
    other); single-label targets are the label indices.
    """
    n = len(label_vectors)
    targets = np.eye(n, dtype=np.int64) if multi_label else np.arange(n, dtype=np.int64)
    return np.asarray(label_vectors, dtype=np.float32), targets


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
