"""The taxonomy's own words as signal: zero-shot suggestions before any label, anchors in every head fit."""

import json

import numpy as np
import pytest

from learning.ml.classifier import TrainingArgs
from learning.ml.label_descriptions import (
    LabelText,
    anchor_rows,
    encode_label_texts,
    label_texts_from_file,
    zero_shot_probabilities,
)
from tests.learning.ml.frozen import frozen_body

LABELS = ["collection", "sharing", "retention"]
TEXTS = [
    LabelText("First party collection", "What we collect about you and why.", "Example: *We collect your email.*"),
    LabelText("Third party sharing", "Data given to advertisers, partners or affiliates."),
    LabelText("Data retention", "How long data is kept before it is deleted."),
]


def test_label_text_reads_name_description_and_plain_guideline():
    text = TEXTS[0].text()
    assert text == "First party collection. What we collect about you and why. Example: We collect your email."


def test_descriptions_file_matches_labels_by_key_or_name_and_keeps_order(tmp_path):
    path = tmp_path / "taxonomy.json"
    path.write_text(
        json.dumps(
            {
                "labels": [
                    {"key": "retention", "name": "Data retention", "description": "How long data is kept."},
                    {"key": "x", "name": "sharing", "guideline": "Use for **partners**."},
                ]
            }
        )
    )
    texts = label_texts_from_file(path, LABELS)
    assert [t.name for t in texts] == ["collection", "sharing", "Data retention"]
    assert texts[0] == LabelText("collection")  # not described: the bare name
    assert texts[1].guideline == "Use for **partners**."
    assert texts[2].description == "How long data is kept."


def test_zero_shot_suggests_the_nearest_label_and_any_within_the_margin():
    labels = np.eye(3)
    documents = np.array([[1.0, 0.0, 0.0], [0.7, 0.69, 0.0], [0.0, 0.1, 1.0]])
    multi = zero_shot_probabilities(documents, labels, multi_label=True, margin=0.06)
    assert (multi >= 0.5).tolist() == [[True, False, False], [True, True, False], [False, False, True]]
    single = zero_shot_probabilities(documents, labels, multi_label=False)
    assert np.allclose(single.sum(axis=1), 1.0)
    assert np.argmax(single, axis=1).tolist() == [0, 0, 2]


def test_zero_shot_on_real_text_picks_the_described_label():
    body = frozen_body()
    vectors = encode_label_texts(TEXTS, body.encode)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    documents = body.encode(
        [
            "We may sell your personal information to advertising partners.",
            "Your account data is deleted ninety days after you close it.",
        ]
    )
    probabilities = zero_shot_probabilities(documents, vectors, multi_label=False)
    assert np.argmax(probabilities, axis=1).tolist() == [1, 2]


def test_anchor_rows_are_one_example_per_label():
    vectors = np.eye(3, dtype=np.float32)
    embeddings, targets = anchor_rows(vectors, multi_label=True)
    assert targets.tolist() == np.eye(3, dtype=int).tolist()
    assert anchor_rows(vectors, multi_label=False)[1].tolist() == [0, 1, 2]
    assert embeddings.shape == (3, 3)


def test_anchors_teach_the_head_a_label_no_document_carries():
    classifier = frozen_body().on_same_body(LABELS, multi_label=True, args=TrainingArgs(anchor_copies=2))
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8) * 4
    # Six documents of the first two labels only; the third label has no labelled document at all.
    embeddings = np.vstack([centres[0] + rng.normal(size=(3, 8)), centres[1] + rng.normal(size=(3, 8))])
    targets = np.array([[1, 0, 0]] * 3 + [[0, 1, 0]] * 3)
    without = frozen_body().on_same_body(LABELS, multi_label=True).fit_head(embeddings, targets)
    assert without.predict_proba_embeddings(centres[2:3])[0, 2] < 0.5
    classifier.fit_head(embeddings, targets, anchors=anchor_rows(centres.astype(np.float32), multi_label=True))
    assert classifier.predict_proba_embeddings(centres[2:3])[0, 2] >= 0.5
    assert classifier.metadata()["n_trained_on"] == 6  # the anchors are not documents


def test_anchors_from_another_body_are_refused():
    classifier = frozen_body().on_same_body(LABELS, multi_label=True, args=TrainingArgs(anchor_copies=1))
    embeddings = np.eye(6, 8, dtype=np.float32)
    targets = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]] * 2)
    with pytest.raises(ValueError, match="another body"):
        classifier.fit_head(embeddings, targets, anchors=anchor_rows(np.eye(3, 5, dtype=np.float32), True))
