"""metrics: confusion matrix, accuracy, recall/precision and the report against hand-computed values; class-set
mapping (8-class model on 7-class data) and restricted argmax."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fer_ros import metrics
from fer_ros.classes import CKPLUS7, CKPLUS8


def test_confusion_matrix_counts_and_sum():
    y_true = [0, 0, 1, 2, 2, 2]
    y_pred = [0, 1, 1, 2, 0, 2]
    cm = metrics.confusion_matrix(y_true, y_pred, 3)
    assert cm.dtype == np.int64
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert cm.sum() == 6


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="length"):
        metrics.confusion_matrix([0, 1], [0], 2)
    with pytest.raises(ValueError, match="outside"):
        metrics.confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="outside"):
        metrics.confusion_matrix([0, 1], [0, -1], 3)
    with pytest.raises(ValueError, match="1-D"):
        metrics.confusion_matrix([[0]], [[0]], 2)


def test_accuracy_recall_precision():
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 0, 2])
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    assert math.isnan(metrics.accuracy([], []))
    cm = metrics.confusion_matrix(y_true, y_pred, 4)
    rec = metrics.recall_per_class(cm)
    prec = metrics.precision_per_class(cm)
    np.testing.assert_allclose(rec[:3], [1 / 2, 1 / 1, 2 / 3])
    assert math.isnan(rec[3])  # class 3 has no samples: undefined, not 0
    np.testing.assert_allclose(prec[:3], [1 / 2, 1 / 2, 2 / 2])
    assert math.isnan(prec[3])


def test_report_is_json_ready_and_matches_direct_computation():
    rng = np.random.default_rng(0)
    names = list(CKPLUS7)
    y_true = rng.integers(0, 6, 200)  # class 6 never occurs
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 7, 200))
    y_pred[y_pred == 2] = 3  # class 2 is never predicted
    rep = metrics.classification_report(y_true, y_pred, names)
    rep = json.loads(json.dumps(rep))  # no NaN, no numpy types
    assert rep["count"] == 200
    assert rep["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    cm = np.asarray(rep["confusion_matrix"])
    assert cm.sum() == 200
    for i, n in enumerate(names):
        sel = y_true == i
        if sel.any():
            assert rep["recall"][n] == pytest.approx(np.mean(y_pred[sel] == i))
        else:
            assert rep["recall"][n] is None
        sel = y_pred == i
        if sel.any():
            assert rep["precision"][n] == pytest.approx(np.mean(y_true[sel] == i))
        else:
            assert rep["precision"][n] is None
        assert rep["support"][n] == int(np.sum(y_true == i))
    assert rep["recall"][names[6]] is None and rep["precision"][names[2]] is None  # both cases were met
    assert rep["support"][names[2]] > 0 and rep["predicted"][names[6]] > 0
    recalls = [rep["recall"][n] for n in names if rep["recall"][n] is not None]
    assert rep["balanced_accuracy"] == pytest.approx(np.mean(recalls))


def test_report_empty():
    rep = metrics.classification_report([], [], ["a", "b"])
    assert rep["count"] == 0 and rep["accuracy"] is None and rep["balanced_accuracy"] is None
    assert rep["confusion_matrix"] == [[0, 0], [0, 0]]


def test_report_across_class_sets_neutral_is_a_miss():
    # 7-class truth, 8-class predictions: predicting neutral (index 7) is always wrong.
    data, model = list(CKPLUS7), list(CKPLUS8)
    y_true = np.array([4, 4, 6, 0])  # happy, happy, surprise, anger
    y_pred = np.array([4, 7, 6, 7])  # happy, neutral, surprise, neutral
    rep = metrics.classification_report(y_true, y_pred, data, pred_names=model)
    assert np.asarray(rep["confusion_matrix"]).shape == (7, 8)
    assert rep["accuracy"] == pytest.approx(2 / 4)
    assert rep["recall"]["happy"] == pytest.approx(1 / 2)
    assert rep["predicted"]["neutral"] == 2
    assert rep["precision"]["neutral"] == pytest.approx(0.0)  # never correct: no neutral truth
    assert "neutral" not in rep["recall"]


def test_map_classes_and_argmax_within():
    m = metrics.map_classes(["Happy", "anger", "boredom"], CKPLUS8)
    assert m.data_to_model.tolist() == [4, 0, -1]
    assert m.unknown == ("boredom",)
    assert "neutral" in m.model_only and "happy" not in m.model_only
    assert m.shared == ("happy", "anger")
    assert metrics.neutral_index(CKPLUS8) == 7
    assert metrics.neutral_index(CKPLUS7) is None
    probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [0.2, 0.1, 0.7]])
    assert metrics.argmax_within(probs, [0, 1]).tolist() == [1, 0, 0]
    assert metrics.argmax_within(probs, [2]).tolist() == [2, 2, 2]
    with pytest.raises(ValueError):
        metrics.argmax_within(probs, [3])
    with pytest.raises(ValueError):
        metrics.argmax_within(probs, [])


def test_class_names_match_by_one_rule():
    assert metrics.class_key(" Happy ") == "happy"
    m = metrics.map_classes(["Happy", "anger "], CKPLUS8)
    assert m.data_names == ("happy", "anger") and m.unknown == ()
