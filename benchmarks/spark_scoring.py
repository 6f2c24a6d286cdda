"""Corpus scoring on Spark against Docket's own in-process predict, on the same texts in the same run.

    nice -n 10 .venv/bin/python benchmarks/spark_scoring.py [--texts 10000] [--standalone-texts 2000]
        [--skip-local] [--skip-standalone] [--port-base 8400] [--write var/bench/spark.json]

No database: it trains a head on the demo's gold labels (frozen all-MiniLM-L6-v2 body), bundles it as
`manage.py export_model` does, and writes a corpus of demo texts (each with a distinct suffix) as JSON Lines.
Measured, each beside the in-process baseline (`ServedModel.predict_proba`, what the API and the pool
scoring call, torch on every core) on the same texts:

1. encoding batch sizes (one thread, as one Spark task runs), to choose the job's default;
2. the Spark job in `local[2]` on `--texts` texts, twice in one session: cold (Python workers start and load the
   model) and warm (they kept it), each without the session's start, which is given apart; then the baseline
   again on the first 2,000 texts, to show any drift in the machine's load;
3. a standalone cluster started here (a master and two workers of one core each, all on 127.0.0.1 in the
   `--port-base` range), with 1 and with 2 executors, on `--standalone-texts` texts.

Prints one JSON object (and writes it with --write): texts/s of each, the ratios, the load average.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")

from bench_setup import result_write  # noqa: E402

from learning.ml.bundle import bundle_write  # noqa: E402
from learning.ml.classifier import Classifier, TrainingArgs  # noqa: E402
from learning.ml.spark_scoring import score_corpus, spark_session  # noqa: E402

PREDICT_BATCH = 32  # learning.serving.PREDICT_BATCH: the API's and the pool's batch (that module needs Django)


class ServedModel:
    """What learning.serving.ServedModel does for a prediction, without Django: the classifier at batch 32."""

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier

    def predict_proba(self, texts: list[str]):
        return self.classifier.predict_proba(texts, batch_size=PREDICT_BATCH)


SCRATCH = Path(tempfile.mkdtemp(prefix="docket-bench-spark-"))


def demo_rows() -> list[dict]:
    with open(ROOT / "annotation" / "demo" / "documents.jsonl", encoding="utf-8") as rows:
        return [json.loads(line) for line in rows]


def corpus_texts(n: int) -> list[str]:
    texts = [row["text"] for row in demo_rows()]
    return [f"{texts[i % len(texts)]} (ref {i})" for i in range(n)]


def train_bundle() -> tuple[Path, ServedModel]:
    rows = [row for row in demo_rows() if row.get("labels")]
    keys = [label["key"] for label in json.loads((ROOT / "annotation/demo/taxonomy.json").read_text())["labels"]]
    classifier = Classifier.create(keys, multi_label=True, args=TrainingArgs(max_steps=0))
    classifier.fit([row["text"] for row in rows], [row["labels"] for row in rows], fine_tune=False)
    classifier.save(SCRATCH / "model")
    bundle = bundle_write(
        model_dir=SCRATCH / "model",
        out_dir=SCRATCH / "bundle",
        project={"id": 1, "name": "Benchmark"},
        model_version=1,
        taxonomy_version=1,
        labels=[{"key": key, "name": key} for key in keys],
    )
    served = ServedModel(Classifier.load(SCRATCH / "model"))
    return bundle, served


def write_corpus(texts: list[str], name: str) -> Path:
    path = SCRATCH / name
    with path.open("w", encoding="utf-8") as out:
        for i, text in enumerate(texts):
            out.write(json.dumps({"id": f"doc-{i}", "text": text}) + "\n")
    return path


def in_process(served: ServedModel, texts: list[str]) -> float:
    started = time.perf_counter()
    served.predict_proba(texts)
    return len(texts) / (time.perf_counter() - started)


def encode_batches(served: ServedModel, texts: list[str], sizes=(16, 32, 64)) -> dict[int, float]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rates = {}
        for size in sizes:
            started = time.perf_counter()
            served.classifier.encode(texts, batch_size=size)
            rates[size] = round(len(texts) / (time.perf_counter() - started), 1)
        return rates
    finally:
        torch.set_num_threads(threads)


def spark_run(master: str, bundle: Path, corpus: Path, n: int, conf: dict, name: str) -> dict:
    """The job twice in one session: cold (Python workers start and load the model) and warm (they kept it)."""
    started = time.perf_counter()
    spark = spark_session(master, app_name=f"docket-bench-{name}", conf=conf)
    spark.sparkContext.setLogLevel("ERROR")
    up = time.perf_counter() - started
    seconds = {}
    try:
        for run in ("cold", "warm"):
            job_started = time.perf_counter()
            out = SCRATCH / f"out-{name}-{run}"
            score_corpus(spark, bundle_dir=bundle, input_path=str(corpus), output_path=str(out))
            seconds[run] = time.perf_counter() - job_started
    finally:
        spark.stop()
    return {
        "texts": n,
        "session_start_s": round(up, 1),
        "cold_job_s": round(seconds["cold"], 1),
        "warm_job_s": round(seconds["warm"], 1),
        "texts_per_s_cold": round(n / seconds["cold"], 1),
        "texts_per_s_warm": round(n / seconds["warm"], 1),
        "texts_per_s_cold_with_start": round(n / (seconds["cold"] + up), 1),
    }


def port_conf(base: int) -> dict:
    return {
        "spark.ui.enabled": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.port": str(base),
        "spark.blockManager.port": str(base + 1),
        "spark.port.maxRetries": "8",
    }


class Standalone:
    """A master and two one-core workers on 127.0.0.1, started and stopped by this benchmark."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.processes: list[subprocess.Popen] = []
        self.url = f"spark://127.0.0.1:{base + 10}"

    def __enter__(self) -> "Standalone":
        import pyspark

        spark_class = str(Path(pyspark.__file__).parent / "bin" / "spark-class")
        env = {
            **os.environ,
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(SCRATCH),
            "PYSPARK_PYTHON": sys.executable,
        }
        master = ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"]
        master += ["--port", str(self.base + 10), "--webui-port", str(self.base + 11)]
        self._start([spark_class, *master], env, "master")
        for index in range(2):
            port = self.base + 12 + 2 * index
            worker = ["org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1", "--cores", "1"]
            worker += ["--memory", "2g", "--port", str(port), "--webui-port", str(port + 1)]
            worker += ["--work-dir", str(SCRATCH / f"work-{index}")]
            self._start([spark_class, *worker], env, f"worker-{index}")
        self._wait_for("master", "elected leader")
        for index in range(2):
            self._wait_for(f"worker-{index}", "Successfully registered with master")
        return self

    def _wait_for(self, name: str, line: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if line in (SCRATCH / f"{name}.log").read_text():
                return
            time.sleep(1)
        raise RuntimeError(f"the standalone {name} did not log {line!r} within {timeout:.0f} s")

    def _start(self, command: list[str], env: dict, name: str) -> None:
        log = (SCRATCH / f"{name}.log").open("w")
        self.processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))

    def __exit__(self, *exc) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--standalone-texts", type=int, default=2_000)
    parser.add_argument("--batch-texts", type=int, default=256, help="texts per encoding batch-size trial")
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--skip-standalone", action="store_true")
    parser.add_argument("--port-base", type=int, default=8400)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": os.cpu_count()}
    result["load_average_start"] = [round(x, 1) for x in os.getloadavg()]
    bundle, served = train_bundle()
    served.predict_proba(corpus_texts(64))  # warm up the baseline's model
    result["encode_batch_texts_per_s_one_thread"] = encode_batches(served, corpus_texts(args.batch_texts))
    conf = port_conf(args.port_base)
    if not args.skip_local:
        texts = corpus_texts(args.texts)
        corpus = write_corpus(texts, "corpus.jsonl")
        baseline = in_process(served, texts)
        local = spark_run("local[2]", bundle, corpus, len(texts), conf, "local2")
        # The baseline again on a slice, after the jobs: a neighbour's load that came or went shows as drift.
        drift = in_process(served, texts[: min(len(texts), 2_000)])
        result["local"] = {
            "in_process_texts_per_s": round(baseline, 1),
            "in_process_after_texts_per_s": round(drift, 1),
            "spark_local2": local,
            "ratio_warm": round(local["texts_per_s_warm"] / baseline, 2),
            "ratio_cold": round(local["texts_per_s_cold"] / baseline, 2),
            "ratio_cold_with_start": round(local["texts_per_s_cold_with_start"] / baseline, 2),
        }
        print(json.dumps(result["local"]), flush=True)
    if not args.skip_standalone:
        texts = corpus_texts(args.standalone_texts)
        corpus = write_corpus(texts, "corpus-standalone.jsonl")
        runs = {"in_process_texts_per_s": round(in_process(served, texts), 1)}
        with Standalone(args.port_base) as cluster:
            for executors in (1, 2):
                cluster_conf = {
                    **conf,
                    "spark.cores.max": str(executors),
                    "spark.executor.cores": "1",
                    "spark.executor.memory": "1500m",
                }
                runs[f"executors_{executors}"] = spark_run(
                    cluster.url, bundle, corpus, len(texts), cluster_conf, f"standalone{executors}"
                )
                print(json.dumps(runs), flush=True)
        result["standalone"] = runs
    result_write(result, args.write)
    shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
