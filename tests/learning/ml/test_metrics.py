"""Metrics equal values worked out by hand."""

import json

import pytest

from learning.ml.exceptions import UnknownLabel
from learning.ml.metrics import evaluate

LABELS = ["collect", "share", "retain"]


def test_single_label_metrics_match_hand_computation():
    true = ["collect", "collect", "share", "share", "retain"]
    pred = ["collect", "share", "share", "share", "collect"]
    result = evaluate(true, pred, LABELS, multi_label=False)
    # collect: tp1 fp1 fn1 -> P=R=F1=0.5; share: tp2 fp1 fn0 -> P=2/3 R=1 F1=0.8; retain: 0.
    assert result["per_label"]["collect"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert result["per_label"]["share"]["f1"] == pytest.approx(0.8)
    assert result["per_label"]["retain"]["f1"] == 0.0
    assert result["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert result["micro_f1"] == pytest.approx(3 / 5)
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["confusion"]["matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_multi_label_metrics_match_hand_computation():
    true = [["collect", "share"], ["share"], ["retain"], []]
    pred = [["collect"], ["share", "retain"], ["retain"], ["collect"]]
    result = evaluate(true, pred, LABELS, multi_label=True)
    # collect: tp1 fp1 fn0 -> F1 2/3; share: tp1 fp0 fn1 -> F1 2/3; retain: tp1 fp1 fn0 -> F1 2/3.
    for label in LABELS:
        assert result["per_label"][label]["f1"] == pytest.approx(2 / 3)
    assert result["macro_f1"] == pytest.approx(2 / 3)
    # micro: tp3 fp2 fn1 -> P 3/5, R 3/4, F1 = 6/9.
    assert result["micro_f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert result["confusion"]["share"] == {"tn": 2, "fp": 0, "fn": 1, "tp": 1}
    assert result["accuracy"] == pytest.approx(1 / 4)


def test_macro_f1_ignores_labels_absent_from_the_evaluation_set():
    result = evaluate(["collect", "share"], ["collect", "share"], LABELS, multi_label=False)
    assert result["macro_f1"] == 1.0
    assert result["per_label"]["retain"]["support"] == 0


def test_result_is_json_serialisable():
    result = evaluate([["collect"]], [["share"]], LABELS, multi_label=True)
    assert json.loads(json.dumps(result)) == result


def test_unknown_label_names_are_rejected():
    with pytest.raises(UnknownLabel):
        evaluate(["collect"], ["sell"], LABELS, multi_label=False)
