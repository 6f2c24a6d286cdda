"""Embed a corpus with a model body on Apache Spark: each document's vector, as Docket's embedding cache holds it.

    spark-submit learning/ml/spark_embedding.py --body POOL/body --input POOL/documents --output embeddings.parquet

The body is a model bundle (manage.py export_model) or the fine-tuned body of a re-embedding that waits for
Spark (manage.py export_pool --reembedding). Reads Parquet, CSV (with a header) or JSON Lines with an integer
document id and a text; writes Parquet with `id` (long), `body_id` (string) and `vector` (array<float>):
float32 vectors encoded exactly as Docket encodes them (`Classifier.encode`), which `manage.py
import_embeddings` stores into the project's embedding cache (docs/scale.md). Each Python worker loads the
body once and keeps it for every task it runs; the body goes to the executors as an archive. Plain Python, no
Django.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script by spark-submit: make `learning` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from learning.ml.spark_scoring import (  # noqa: E402
    ENCODE_BATCH,
    _ship_bundle,
    _ship_code,
    job_arguments,
    job_run,
    read_corpus,
)

logger = logging.getLogger("docket.spark_embedding")

BODY_FILE = "body.json"
"""Written beside a body exported for Spark (export_pool --reembedding): its body id, project and dimension."""
OUTPUT_SCHEMA = "`id` long, `body_id` string, `vector` array<float>"

_LOADED: dict[str, tuple[Any, bool]] = {}
"""Bodies this Python worker has loaded, by path, with their normalisation: each loads once per worker."""


class BodyUnknown(ValueError):
    """A directory that is not a model body Docket can name (no bundle manifest, Docket model or body.json)."""


def body_identity(path: str | Path) -> dict[str, Any]:
    """The body id (the embedding cache's key) of a bundle, a saved Docket model or an exported body."""
    path = Path(path)
    for name in (BODY_FILE, "manifest.json", "docket.json"):
        candidate = path / name
        if candidate.is_file():
            identity = json.loads(candidate.read_text())
            if identity.get("body_id"):
                return identity
    raise BodyUnknown(
        f"{path} names no body id (no {BODY_FILE}, manifest.json or docket.json): pass --body-id, or export it with "
        "manage.py export_model or export_pool --reembedding"
    )


def normalises(path: str | Path) -> bool:
    """Whether Docket normalises this body's vectors: SetFit's own setting when the directory has it (a bundle),
    else SetFit's default (False), as `Classifier.create` leaves it for a fine-tuned body."""
    config = Path(path) / "config_setfit.json"
    if config.is_file():
        return bool(json.loads(config.read_text()).get("normalize_embeddings", False))
    return False


def body_load(path: str, threads: int) -> tuple[Any, bool]:
    """The body as a SentenceTransformer on the CPU, loaded once per Python worker, and its normalisation."""
    loaded = _LOADED.get(path)
    if loaded is None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        started = time.perf_counter()
        loaded = _LOADED[path] = (SentenceTransformer(path, device="cpu", local_files_only=True), normalises(path))
        logger.info("Loaded the body at %s in %.1f s (pid %s)", path, time.perf_counter() - started, os.getpid())
    return loaded


def encode_texts(body: Any, texts: Sequence[str], *, normalise: bool, encode_batch: int = ENCODE_BATCH) -> Any:
    """Float32 vectors (n, dim) as `Classifier.encode` makes them: the body's own modules, then SetFit's optional
    normalisation."""
    import numpy as np

    if not texts:
        width = body.get_embedding_dimension() if hasattr(body, "get_embedding_dimension") else None
        return np.zeros((0, width or body.get_sentence_embedding_dimension()), dtype=np.float32)
    vectors = body.encode(
        list(texts),
        batch_size=encode_batch,
        convert_to_numpy=True,
        normalize_embeddings=normalise,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)


def embed_batches(
    *, body_name: str, body_id: str, id_column: str, text_column: str, encode_batch: int, threads: int
) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The function `mapInPandas` runs on each partition: pandas batches in, (id, body_id, vector) batches out."""

    def embed(batches: Iterator[Any]) -> Iterator[Any]:
        import numpy as np
        import pandas as pd
        from pyspark import SparkFiles

        body, normalise = body_load(SparkFiles.get(body_name), threads)
        for batch in batches:
            texts = batch[text_column].fillna("").astype(str).tolist()
            vectors = encode_texts(body, texts, normalise=normalise, encode_batch=encode_batch)
            yield pd.DataFrame(
                {
                    "id": batch[id_column].astype(np.int64).to_numpy(),
                    "body_id": np.full(len(texts), body_id, dtype=object),
                    "vector": list(vectors),
                }
            )

    return embed


def embed_corpus(
    spark: Any,
    *,
    body_dir: str | Path,
    input_path: str,
    output_path: str,
    fmt: str = "auto",
    id_column: str = "id",
    text_column: str = "text",
    body_id: str | None = None,
    partitions: int | None = None,
    encode_batch: int = ENCODE_BATCH,
    threads: int | None = None,
    mode: str = "errorifexists",
) -> str:
    """Embed `input_path` into Parquet at `output_path` with the body; returns the body id written."""
    from pyspark.sql import functions as F

    body_dir = Path(body_dir).resolve()
    if not (body_dir / "modules.json").is_file():
        raise BodyUnknown(f"{body_dir} is not a sentence-transformers body (no modules.json)")
    body_id = body_id or body_identity(body_dir)["body_id"]
    context = spark.sparkContext
    archive_name = _ship_bundle(context, body_dir)
    _ship_code(context)
    corpus = read_corpus(spark, input_path, fmt)
    missing = [name for name in (id_column, text_column) if name not in corpus.columns]
    if missing:
        raise ValueError(f"{input_path} has no column {', '.join(missing)}; it has {', '.join(corpus.columns)}")
    # Docket's cache is keyed by document id: refuse, before encoding anything, ids that are not integers.
    corpus = corpus.select(F.col(id_column).alias("source_id"), F.col(text_column).alias("text"))
    corpus = corpus.withColumn("id", F.col("source_id").try_cast("long"))  # NULL, not an error, when malformed
    bad = corpus.filter(F.col("id").isNull()).select("source_id").limit(3).collect()
    if bad:
        examples = ", ".join(repr(row["source_id"]) for row in bad)
        raise ValueError(f"{input_path}: column {id_column} must hold Docket document ids (integers), not {examples}")
    corpus = corpus.select("id", "text")
    wanted = partitions or context.defaultParallelism
    if corpus.rdd.getNumPartitions() < wanted:
        corpus = corpus.repartition(wanted)  # a single file is one partition: spread it over every core
    threads = threads or int(spark.conf.get("spark.task.cpus", "1"))
    function = embed_batches(
        body_name=archive_name,
        body_id=body_id,
        id_column="id",
        text_column="text",
        encode_batch=encode_batch,
        threads=threads,
    )
    corpus.mapInPandas(function, OUTPUT_SCHEMA).write.mode(mode).parquet(output_path)
    return body_id


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--body", required=True, help="a bundle (export_model) or a body (export_pool --reembedding)")
    job_arguments(parser, id_help="Docket's document ids (integers)")
    parser.add_argument("--body-id", help="default: the body id the directory names (body.json or manifest.json)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    body_id = job_run(
        args,
        "docket-corpus-embedding",
        lambda spark: embed_corpus(
            spark,
            body_dir=args.body,
            input_path=args.input,
            output_path=args.output,
            fmt=args.format,
            id_column=args.id_column,
            text_column=args.text_column,
            body_id=args.body_id,
            partitions=args.partitions,
            encode_batch=args.encode_batch,
            threads=args.threads,
            mode="overwrite" if args.overwrite else "errorifexists",
        ),
    )
    logger.info(
        "Embedded %s under body %s into %s in %.1f s", args.input, body_id, args.output, time.perf_counter() - started
    )
    return 0


if __name__ == "__main__":
    # Run through the importable module, not __main__ (see spark_scoring): each Python worker keeps its body.
    from learning.ml import spark_embedding

    sys.exit(spark_embedding.main())
