"""Search by meaning: exact nearest neighbours (Explore's held matrix) and approximate indexes, against numpy.

    nice -n 10 .venv/bin/python benchmarks/search_neighbours.py --sizes 100000 --ann-sizes 100000 \
        --libraries usearch hnswlib faiss --write var/bench/neighbours-100k.json

Vectors are synthetic: 384-dimensional, unit length, drawn around 2,000 random centres (sentence embeddings are
clustered like that; uniform random vectors would be harder for every index and unlike any real collection).
Queries are 200 further draws, never in the index. For each size it times, one query at a time:

- exact: `learning.services.neighbours.exact_top_k` on the unit matrix a process holds (one matrix-vector product and a
  partial sort), as Explore runs it;
- baseline: numpy brute force as one would write it without the held matrix (cosine from raw vectors per query,
  full sort);
- each approximate library asked for (usearch, hnswlib, faiss HNSW), built with the same graph settings (M=16,
  ef_construction 128 unless --ef-construction says otherwise, ef_search=128) on every core, searched one query
  at a time on one thread; its recall@50 is against the exact top 50.

Prints a Markdown table and writes JSON. Each index is built, measured and freed before the next.
"""

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DOCKET_DEVELOPMENT", "1")

DIM = 384
K = 50
M, EF_SEARCH = 16, 128
EF_CONSTRUCTION = 128  # --ef-construction; Explore's own index uses learning.services.neighbours.ANN_BUILD_BREADTH


def vectors(n: int, seed: int, centres: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        size = min(100_000, n - start)
        chunk = centres[rng.integers(0, len(centres), size)] + rng.normal(scale=0.08, size=(size, DIM))
        out[start : start + size] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def timed(queries: np.ndarray, search) -> tuple[list[np.ndarray], dict[str, float]]:
    """Wall time per query (what a request waits), and CPU time (what it costs, whatever else the machine runs)."""
    results, seconds, cpu = [], [], []
    for query in queries:
        started, cpu_started = time.perf_counter(), time.process_time()
        results.append(search(query))
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    cpu_ms = np.asarray(cpu) * 1000
    return results, {**percentiles(seconds), "cpu_p50_ms": round(float(np.percentile(cpu_ms, 50)), 2)}


def recall(found: list[np.ndarray], truth: list[np.ndarray]) -> float:
    hits = [len(set(map(int, f[:K])) & set(map(int, t[:K]))) / K for f, t in zip(found, truth, strict=True)]
    return round(float(np.mean(hits)), 4)


def build_usearch(data: np.ndarray):
    from usearch.index import Index

    index = Index(ndim=DIM, metric="ip", dtype="f32", connectivity=M, expansion_add=EF_CONSTRUCTION)
    index.add(np.arange(len(data), dtype=np.uint64), data, threads=os.cpu_count())
    index.expansion_search = EF_SEARCH
    return lambda q: np.asarray(index.search(q, K, threads=1).keys, dtype=np.int64)


def build_hnswlib(data: np.ndarray):
    import hnswlib

    index = hnswlib.Index(space="ip", dim=DIM)
    index.init_index(max_elements=len(data), ef_construction=EF_CONSTRUCTION, M=M)
    index.add_items(data, np.arange(len(data)), num_threads=os.cpu_count())
    index.set_ef(EF_SEARCH)
    index.set_num_threads(1)
    return lambda q: index.knn_query(q, k=K)[0][0].astype(np.int64)


def build_faiss(data: np.ndarray):
    import faiss

    faiss.omp_set_num_threads(os.cpu_count())
    index = faiss.IndexHNSWFlat(DIM, M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    index.add(data)
    index.hnsw.efSearch = EF_SEARCH
    faiss.omp_set_num_threads(1)
    return lambda q: index.search(q.reshape(1, -1), K)[1][0].astype(np.int64)


def build_faiss_ivf(data: np.ndarray):
    """faiss's inverted file: k-means cells (IVF_LISTS, trained on a sample), a query scans the IVF_PROBES nearest
    cells exactly. Far cheaper to build than a graph; Explore's own index (learning.services.neighbours)."""
    import faiss

    from learning.services.neighbours import ann_build

    faiss.omp_set_num_threads(os.cpu_count())
    index = ann_build(data)
    faiss.omp_set_num_threads(1)
    return lambda q: index.search(q.reshape(1, -1), K)[1][0].astype(np.int64)


BUILDERS = {"usearch": build_usearch, "hnswlib": build_hnswlib, "faiss": build_faiss, "faiss_ivf": build_faiss_ivf}


def _write(path: Path | None, report: dict, partial: dict | None = None) -> None:
    """Written after every measurement, so a run cut short keeps what it measured."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = report["rows"] + ([partial] if partial is not None else [])
    path.write_text(json.dumps({**report, "rows": rows}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--ann-sizes", type=int, nargs="*", default=[], help="Sizes at which to build indexes.")
    parser.add_argument("--libraries", nargs="*", default=list(BUILDERS), choices=list(BUILDERS))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--baseline-queries", type=int, default=50)
    parser.add_argument("--ef-construction", type=int, default=EF_CONSTRUCTION)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    globals()["EF_CONSTRUCTION"] = args.ef_construction

    import django

    django.setup()
    from learning.services.neighbours import exact_top_k, unit_rows

    centres = np.random.default_rng(0).normal(size=(2_000, DIM)).astype(np.float32)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "numpy": np.__version__,
        "graph": {"M": M, "ef_construction": args.ef_construction, "ef_search": EF_SEARCH},
        "rows": [],
    }
    queries = vectors(args.queries, seed=99, centres=centres)
    for n in args.sizes:
        raw = vectors(n, seed=1, centres=centres) * np.float32(1.7)  # not unit length: the baseline normalises
        started = time.perf_counter()
        unit = unit_rows(raw)
        hold_seconds = time.perf_counter() - started
        truth, exact = timed(queries, lambda q, unit=unit: exact_top_k(unit, q, K)[0])

        def brute_force(q, raw=raw):
            scores = (raw @ q) / (np.linalg.norm(raw, axis=1) * np.linalg.norm(q))
            return np.argsort(-scores)[:K]

        # The baseline allocates and normalises the whole matrix per query: a few queries tell its cost.
        baseline_found, baseline = timed(queries[: args.baseline_queries], brute_force)
        del raw
        row = {
            "documents": n,
            "exact": {**exact, "recall_at_50": 1.0, "hold_seconds": round(hold_seconds, 2)},
            "numpy_baseline": {
                **baseline,
                "queries": len(baseline_found),
                "recall_at_50": recall(baseline_found, truth[: len(baseline_found)]),
            },
            "approximate": {},
        }
        print(f"{n:>9,} exact {exact} baseline {baseline}", flush=True)
        if n in args.ann_sizes:
            for library in args.libraries:
                started = time.perf_counter()
                search = BUILDERS[library](unit)
                build_seconds = time.perf_counter() - started
                found, latency = timed(queries, search)
                row["approximate"][library] = {
                    **latency,
                    "recall_at_50": recall(found, truth),
                    "build_seconds": round(build_seconds, 1),
                }
                print(f"{n:>9,} {library} {row['approximate'][library]}", flush=True)
                del search
                _write(args.write, report, row)
        report["rows"].append(row)
        _write(args.write, report)
        del unit
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
