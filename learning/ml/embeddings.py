"""A disk cache of embeddings, keyed by the texts and the body that encoded them.

Encoding is the slow part of every experiment (60-80 texts/s on two cores); a frozen body gives the same
vectors every time, so each (collection, body) pair is encoded once and read back as .npy afterwards.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


def texts_key(texts: Sequence[str], body_id: str) -> str:
    """A stable key for these texts, in this order, encoded by this body."""
    digest = hashlib.sha256(body_id.encode())
    for text in texts:
        encoded = text.encode()
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()[:32]


class EmbeddingCache:
    """Embeddings as `<key>.npy` files in one directory; writes are atomic so a crash leaves no half file."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path_for(self, texts: Sequence[str], body_id: str) -> Path:
        return self.directory / f"{texts_key(texts, body_id)}.npy"

    def get(self, texts: Sequence[str], body_id: str) -> np.ndarray | None:
        path = self.path_for(texts, body_id)
        if not path.exists():
            return None
        embeddings = np.load(path)
        return embeddings if len(embeddings) == len(texts) else None

    def put(self, texts: Sequence[str], body_id: str, embeddings: np.ndarray) -> Path:
        path = self.path_for(texts, body_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(scratch, np.asarray(embeddings, dtype=np.float32))
        os.replace(scratch, path)
        return path

    def get_or_compute(
        self, texts: Sequence[str], body_id: str, encode: Callable[[list[str]], np.ndarray]
    ) -> np.ndarray:
        """Cached embeddings, or `encode(texts)` stored for next time."""
        cached = self.get(texts, body_id)
        if cached is not None:
            return cached
        embeddings = np.asarray(encode(list(texts)), dtype=np.float32)
        self.put(texts, body_id, embeddings)
        return embeddings
