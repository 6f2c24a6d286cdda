"""Score a corpus with a model bundle on Apache Spark: every label's probability and the predicted labels.

    spark-submit learning/ml/spark_scoring.py --bundle BUNDLE --input corpus.jsonl --output scored.parquet

Reads Parquet, CSV (with a header) or JSON Lines; writes Parquet with the document id, one `prob_<label key>`
column per label, the predicted labels, the model version and the taxonomy version (docs/scale.md). Each
Python worker loads the model once and keeps it for every task it runs (`mapInPandas` over Arrow batches);
Spark ships the bundle to the executors itself (as an archive), so it needs no shared disk. Plain Python, no
Django.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

if __package__ in (None, ""):  # run as a script by spark-submit: make `learning` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from learning.ml.bundle import CHECKSUMS, Bundle, bundle_read  # noqa: E402

logger = logging.getLogger("docket.spark_scoring")

FORMATS = ("auto", "parquet", "csv", "jsonl")
PROBABILITY_PREFIX = "prob_"
ENCODE_BATCH = 64
"""Texts per forward pass (`--encode-batch`); benchmarks/spark_scoring.py sweeps it (docs/benchmarks.md)."""
ARROW_BATCH = 1024
"""Rows per Arrow batch handed to a worker: large enough for length-sorted encoding batches, small enough to
report progress and keep memory flat."""

_LOADED: dict[str, tuple[Bundle, Any]] = {}
"""Models this Python worker has loaded, by bundle path: Spark reuses workers across tasks, so each loads once."""


def output_columns(bundle: Bundle, keep: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(name, Spark SQL type) of the scored table, in order."""
    columns = [("id", "string")]
    columns += [(f"{PROBABILITY_PREFIX}{key}", "double") for key in bundle.label_keys]
    columns += [("labels", "array<string>"), ("model_version", "int"), ("taxonomy_version", "int")]
    columns += [(name, "string") for name in keep]
    return columns


def _model_for(bundle_path: str, threads: int) -> tuple[Bundle, Any]:
    loaded = _LOADED.get(bundle_path)
    if loaded is None:
        import torch
        from setfit import SetFitModel

        torch.set_num_threads(threads)
        started = time.perf_counter()
        bundle = bundle_read(bundle_path, verify=False)  # the driver verified it before shipping
        model = SetFitModel.from_pretrained(bundle_path, local_files_only=True, device="cpu")
        loaded = _LOADED[bundle_path] = (bundle, model)
        logger.info(
            "Loaded model v%s in %.1f s (pid %s)", bundle.model_version, time.perf_counter() - started, os.getpid()
        )
    return loaded


def score_batches(
    *,
    bundle_name: str,
    id_column: str,
    text_column: str,
    keep: Sequence[str],
    encode_batch: int,
    threads: int,
) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The function `mapInPandas` runs on each partition: pandas batches in, scored pandas batches out."""

    def score(batches: Iterator[Any]) -> Iterator[Any]:
        import numpy as np
        import pandas as pd
        from pyspark import SparkFiles

        bundle, model = _model_for(SparkFiles.get(bundle_name), threads)
        for batch in batches:
            texts = batch[text_column].fillna("").astype(str).tolist()
            if texts:
                probabilities = np.asarray(model.predict_proba(texts, batch_size=encode_batch), dtype=np.float64)
            else:
                probabilities = np.zeros((0, len(bundle.label_keys)))
            out = {"id": batch[id_column].astype(str).to_numpy()}
            for j, key in enumerate(bundle.label_keys):
                out[f"{PROBABILITY_PREFIX}{key}"] = probabilities[:, j]
            out["labels"] = bundle.decide(probabilities)
            out["model_version"] = np.full(len(texts), bundle.model_version, dtype=np.int32)
            out["taxonomy_version"] = np.full(len(texts), bundle.taxonomy_version, dtype=np.int32)
            for name in keep:
                out[name] = batch[name].astype(str).to_numpy()
            yield pd.DataFrame(out)

    return score


def read_corpus(spark: Any, path: str, fmt: str = "auto") -> Any:
    """A DataFrame of the corpus; `auto` goes by the file (or directory's files) extension."""
    if fmt == "auto":
        fmt = _format_of(path)
    if fmt == "parquet":
        return spark.read.parquet(path)
    if fmt == "csv":
        # Multi-line quoted cells are normal in exported text; every column is read as a string.
        return spark.read.csv(path, header=True, multiLine=True, escape='"')
    return spark.read.json(path)


def _format_of(path: str) -> str:
    name = path.rstrip("/")
    if os.path.isdir(name):
        suffixes = {Path(p).suffix for p in os.listdir(name) if not p.startswith((".", "_"))}
        name = next(iter(sorted(suffixes)), "")
    for suffix, fmt in ((".parquet", "parquet"), (".csv", "csv"), (".jsonl", "jsonl"), (".json", "jsonl")):
        if name.endswith(suffix):
            return fmt
    raise ValueError(f"cannot tell the format of {path}; pass --format parquet, csv or jsonl")


def score_corpus(
    spark: Any,
    *,
    bundle_dir: str | Path,
    input_path: str,
    output_path: str,
    fmt: str = "auto",
    id_column: str = "id",
    text_column: str = "text",
    keep: Sequence[str] = (),
    partitions: int | None = None,
    encode_batch: int = ENCODE_BATCH,
    threads: int | None = None,
    mode: str = "errorifexists",
) -> Bundle:
    """Score `input_path` into Parquet at `output_path` with the bundle; returns the bundle read."""
    bundle = bundle_read(bundle_dir)  # verifies the checksums once, here, before anything is shipped
    context = spark.sparkContext
    archive_name = _ship_bundle(context, Path(bundle_dir).resolve())
    _ship_code(context)
    corpus = read_corpus(spark, input_path, fmt)
    missing = [name for name in (id_column, text_column, *keep) if name not in corpus.columns]
    if missing:
        raise ValueError(f"{input_path} has no column {', '.join(missing)}; it has {', '.join(corpus.columns)}")
    wanted = partitions or context.defaultParallelism
    if corpus.rdd.getNumPartitions() < wanted:
        corpus = corpus.repartition(wanted)  # a single file is one partition: spread it over every core
    threads = threads or int(spark.conf.get("spark.task.cpus", "1"))
    schema = ", ".join(f"`{name}` {kind}" for name, kind in output_columns(bundle, keep))
    function = score_batches(
        bundle_name=archive_name,
        id_column=id_column,
        text_column=text_column,
        keep=list(keep),
        encode_batch=encode_batch,
        threads=threads,
    )
    scored = corpus.select(id_column, text_column, *[k for k in keep if k not in (id_column, text_column)])
    scored.mapInPandas(function, schema).write.mode(mode).parquet(output_path)
    return bundle


_SHIPPED: set[tuple[str, str]] = set()
_SCRATCH: list[Path] = []


def _scratch() -> Path:
    """A directory of this driver's for what it ships; removed when the driver exits (executors fetch lazily)."""
    if not _SCRATCH:
        _SCRATCH.append(Path(tempfile.mkdtemp(prefix="docket-spark-")))
        atexit.register(shutil.rmtree, _SCRATCH[0], ignore_errors=True)
    return _SCRATCH[0]


def _ship_bundle(context: Any, bundle_dir: Path) -> str:
    """Send the bundle (or a model body's directory) to every executor as an archive (Spark ships no directories
    outside local mode); returns the name under which `SparkFiles.get` finds it unpacked."""
    checksums = bundle_dir / CHECKSUMS
    if checksums.is_file():
        digest = checksums.read_bytes()
    else:  # a body without checksums: its files' names, sizes and times tell one copy from another
        digest = "\n".join(
            f"{p.relative_to(bundle_dir)} {p.stat().st_size} {p.stat().st_mtime_ns}"
            for p in sorted(bundle_dir.rglob("*"))
            if p.is_file()
        ).encode()
    name = f"{bundle_dir.name}-{hashlib.sha256(digest).hexdigest()[:12]}.zip"
    if (context.applicationId, name) in _SHIPPED:
        return name
    archive = _scratch() / name
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zipped:
        for path in sorted(p for p in bundle_dir.rglob("*") if p.is_file()):
            zipped.write(path, path.relative_to(bundle_dir).as_posix())
    context.addArchive(str(archive))
    _SHIPPED.add((context.applicationId, name))
    return name


def _ship_code(context: Any) -> None:
    """Give executors the Spark jobs and the bundle reader (all they import from Docket) as a zip on their path.

    Executors fetch the zip from the driver whenever they start a task, so it stays until the driver exits.
    """
    package = Path(__file__).resolve().parents[1]  # learning/
    if (context.applicationId, "code") in _SHIPPED or not (package / "ml" / "bundle.py").is_file():
        return  # shipped already, or imported from a zip given with --py-files, which Spark ships itself
    archive = _scratch() / f"docket_scoring_{context.applicationId}.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for relative in (
            "__init__.py",
            "ml/__init__.py",
            "ml/bundle.py",
            "ml/spark_scoring.py",
            "ml/spark_embedding.py",
        ):
            zipped.write(package / relative, f"learning/{relative}")
    context.addPyFile(str(archive))
    _SHIPPED.add((context.applicationId, "code"))


def spark_session(master: str | None = None, *, app_name: str = "docket-corpus-scoring", conf: dict | None = None):
    """A session with Docket's defaults: Arrow batches of ARROW_BATCH rows, workers on this Python."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    settings = {"spark.sql.execution.arrow.maxRecordsPerBatch": str(ARROW_BATCH), **(conf or {})}
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


T = TypeVar("T")


def job_arguments(parser: argparse.ArgumentParser, *, id_help: str | None) -> None:
    """The options every Docket Spark job takes: where the texts are, where the output goes, how it runs."""
    parser.add_argument("--input", required=True, help="file or directory (local, hdfs://, s3a://, gs://)")
    parser.add_argument("--output", required=True, help="Parquet directory to write")
    parser.add_argument("--format", choices=FORMATS, default="auto")
    parser.add_argument("--id-column", default="id", help=id_help)
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--partitions", type=int, help="default: the cluster's cores (spark.default.parallelism)")
    parser.add_argument("--encode-batch", type=int, default=ENCODE_BATCH)
    parser.add_argument("--threads", type=int, help="torch threads per task (default spark.task.cpus)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--master", help="only outside spark-submit, e.g. local[*]")


def job_run(args: argparse.Namespace, app_name: str, job: Callable[[Any], T]) -> T:
    """Run `job` in a session of its own (logging on, pandas' version warning off), stopped however it ends."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    spark = spark_session(args.master, app_name=app_name)
    try:
        return job(spark)
    finally:
        spark.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True, help="bundle directory written by manage.py export_model")
    job_arguments(parser, id_help=None)
    parser.add_argument("--keep", action="append", default=[], help="input column to copy to the output (repeat)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    bundle = job_run(
        args,
        "docket-corpus-scoring",
        lambda spark: score_corpus(
            spark,
            bundle_dir=args.bundle,
            input_path=args.input,
            output_path=args.output,
            fmt=args.format,
            id_column=args.id_column,
            text_column=args.text_column,
            keep=args.keep,
            partitions=args.partitions,
            encode_batch=args.encode_batch,
            threads=args.threads,
            mode="overwrite" if args.overwrite else "errorifexists",
        ),
    )
    logger.info(
        "Scored %s with model v%s (taxonomy v%s) into %s in %.1f s",
        args.input,
        bundle.model_version,
        bundle.taxonomy_version,
        args.output,
        time.perf_counter() - started,
    )
    return 0


if __name__ == "__main__":
    # Run through the importable module, not __main__: functions pickled by reference keep each Python worker's
    # loaded model in that module's _LOADED; pickled by value (as __main__'s are) they would load it per task.
    from learning.ml import spark_scoring

    sys.exit(spark_scoring.main())
