"""The Spark jobs in local mode agree with Docket: corpus scoring with its predict, for every input format, and
corpus embedding with its encode."""

import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest

from learning.ml.bundle import bundle_write
from learning.ml.classifier import Classifier
from learning.ml.spark_embedding import BODY_FILE, embed_corpus
from learning.ml.spark_scoring import PROBABILITY_PREFIX, score_corpus, spark_session
from learning.serving import ServedModel
from tests.learning.conftest import LABELLED, POOL
from tests.learning.ml.frozen import frozen_body

pytestmark = pytest.mark.slow

KEYS = list(LABELLED)
TEXTS = [text for texts in LABELLED.values() for text in texts]
CORPUS = POOL + [f"{text} This applies to account number {n}." for n, text in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def spark():
    """One local[2] session for the module; ports in DOCKET_TEST_SPARK_PORT's range when set, else any."""
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    port = int(os.environ.get("DOCKET_TEST_SPARK_PORT", "0"))
    conf = {
        "spark.ui.enabled": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.port": str(port),
        "spark.blockManager.port": str(port + 1 if port else 0),
        "spark.sql.shuffle.partitions": "2",
    }
    session = spark_session("local[2]", app_name="docket-tests", conf=conf)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def bundle_of(tmp_path_factory, *, multi_label: bool):
    """A trained head on the frozen body, saved as Docket saves a version and bundled as export_model does."""
    classifier = frozen_body().on_same_body(KEYS, multi_label)
    y = [[key] if multi_label else key for key, texts in LABELLED.items() for _ in texts]
    if multi_label:  # one document with two labels, so the heads differ from a softmax
        classifier.fit_head(classifier.encode([*TEXTS, "We encrypt what we share."]), [*y, KEYS[1:]])
    else:
        classifier.fit_head(classifier.encode(TEXTS), y)
    root = tmp_path_factory.mktemp("multi" if multi_label else "single")
    classifier.save(root / "model")
    labels = [{"key": key, "name": key.replace("_", " ").title()} for key in KEYS]
    bundle = bundle_write(
        model_dir=root / "model",
        out_dir=root / f"bundle-{'multi' if multi_label else 'single'}",
        project={"id": 1, "name": "Tests"},
        model_version=3,
        taxonomy_version=2,
        labels=labels,
    )
    served = ServedModel(
        project_id=1,
        number=3,
        taxonomy_version=2,
        label_keys=KEYS,
        multi_label=multi_label,
        classifier=Classifier.load(root / "model"),
    )
    return bundle, served


def scored(path) -> pd.DataFrame:
    return pd.read_parquet(path).set_index("id").sort_index()


def assert_same_as_docket(table: pd.DataFrame, served: ServedModel, ids: list[str]) -> None:
    expected = served.predict_proba(CORPUS)
    order = np.argsort(ids)
    got = table[[f"{PROBABILITY_PREFIX}{key}" for key in KEYS]].to_numpy()
    np.testing.assert_allclose(got, expected[order], atol=1e-5, rtol=0)
    assert [list(labels) for labels in table["labels"]] == [served.decide(expected)[i] for i in order]
    assert set(table["model_version"]) == {3} and set(table["taxonomy_version"]) == {2}


def test_spark_scores_jsonl_like_docket_predict(spark, tmp_path_factory, tmp_path):
    bundle, served = bundle_of(tmp_path_factory, multi_label=False)
    ids = [f"doc-{n:03d}" for n in range(len(CORPUS))]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, CORPUS, strict=True)))
    out = tmp_path / "scored"
    score_corpus(spark, bundle_dir=bundle, input_path=str(corpus), output_path=str(out), keep=["text"])
    table = scored(out)
    assert len(table) == len(CORPUS)
    assert list(table.columns) == [*(f"prob_{k}" for k in KEYS), "labels", "model_version", "taxonomy_version", "text"]
    assert table.loc["doc-000", "text"] == CORPUS[0]
    assert_same_as_docket(table, served, ids)


def test_spark_scores_parquet_and_multiline_csv_multi_label(spark, tmp_path_factory, tmp_path):
    bundle, served = bundle_of(tmp_path_factory, multi_label=True)
    ids = [str(1000 + n) for n in range(len(CORPUS))]
    frame = pd.DataFrame({"doc": ids, "body": CORPUS})
    frame.to_parquet(tmp_path / "corpus.parquet")
    # A quoted cell over two lines: exports of free text have them, and the reader must not split the row.
    csv_frame = frame.assign(body=[text.replace(". ", ".\n", 1) for text in CORPUS])
    csv_frame.to_csv(tmp_path / "corpus.csv", index=False)
    options = {"id_column": "doc", "text_column": "body"}
    score_corpus(
        spark,
        bundle_dir=bundle,
        input_path=str(tmp_path / "corpus.parquet"),
        output_path=str(tmp_path / "p"),
        **options,
    )
    assert_same_as_docket(scored(tmp_path / "p"), served, ids)
    score_corpus(
        spark, bundle_dir=bundle, input_path=str(tmp_path / "corpus.csv"), output_path=str(tmp_path / "c"), **options
    )
    from_csv = scored(tmp_path / "c")
    assert len(from_csv) == len(CORPUS)
    changed = [i for i, text in enumerate(CORPUS) if ". " in text]
    unchanged = [ids[i] for i in range(len(CORPUS)) if i not in changed]
    pd.testing.assert_frame_equal(from_csv.loc[unchanged], scored(tmp_path / "p").loc[unchanged])


def test_spark_embeddings_equal_docket_encode_for_an_exported_body(spark, tmp_path):
    """A body as export_pool --reembedding writes it (a fine-tuned one has the same files), embedded in local[2]."""
    body = frozen_body()
    body.setfit_model.model_body.save(str(tmp_path / "body"))
    (tmp_path / "body" / BODY_FILE).write_text(json.dumps({"body_id": body.body_id, "dimension": 384}))
    ids = [10_000 + n for n in range(len(CORPUS))]
    pd.DataFrame({"id": ids, "text": CORPUS}).to_parquet(tmp_path / "documents.parquet")
    out = tmp_path / "embedded"
    written = embed_corpus(
        spark, body_dir=tmp_path / "body", input_path=str(tmp_path / "documents.parquet"), output_path=str(out)
    )
    table = pd.read_parquet(out).set_index("id").sort_index()
    assert written == body.body_id and set(table["body_id"]) == {body.body_id}
    assert table.index.tolist() == ids
    vectors = np.stack(table["vector"].to_numpy())
    assert vectors.dtype == np.float32 and vectors.shape == (len(CORPUS), 384)
    np.testing.assert_allclose(vectors, body.encode(CORPUS), atol=1e-5, rtol=0)


def test_spark_embedding_refuses_ids_that_are_not_document_ids_before_encoding(spark, tmp_path):
    body = frozen_body()
    body.setfit_model.model_body.save(str(tmp_path / "body"))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"doc-{n}", "text": t}) + "\n" for n, t in enumerate(CORPUS[:3])))
    with pytest.raises(ValueError, match="must hold Docket document ids"):
        embed_corpus(
            spark,
            body_dir=tmp_path / "body",
            body_id=body.body_id,
            input_path=str(corpus),
            output_path=str(tmp_path / "out"),
        )
