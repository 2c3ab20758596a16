"""Metrics against figures computed by hand on a tiny confusion matrix."""

import numpy as np
import pytest

from models.training.metrics import (
    binary_accuracy,
    classification_report,
    confusion_matrix,
    cumulative_score,
    format_report,
    mean_absolute_error,
    one_off_accuracy,
)

# Rows true, columns predicted (3 classes, 10 samples):
#   class 0: 3 right, 1 called class 1      support 4
#   class 1: 2 right, 1 called class 2      support 3
#   class 2: 1 right, 1 called class 0, 1 called class 1   support 3
MATRIX = np.array([[3, 1, 0], [0, 2, 1], [1, 1, 1]])
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 0, 1, 1, 1, 2, 2, 0, 1])


def test_confusion_matrix_counts():
    np.testing.assert_array_equal(confusion_matrix(Y_TRUE, Y_PRED, 3), MATRIX)


def test_report_by_hand():
    report = classification_report(MATRIX)
    # precision = tp / column sum: 3/4, 2/4, 1/2; recall = tp / row sum: 3/4, 2/3, 1/3
    np.testing.assert_allclose(report["precision"], [0.75, 0.5, 0.5])
    np.testing.assert_allclose(report["recall"], [0.75, 2 / 3, 1 / 3])
    f1 = [0.75, 2 * 0.5 * (2 / 3) / (0.5 + 2 / 3), 2 * 0.5 * (1 / 3) / (0.5 + 1 / 3)]  # 0.75, 4/7, 0.4
    np.testing.assert_allclose(report["f1"], f1)
    np.testing.assert_array_equal(report["support"], [4, 3, 3])
    assert report["accuracy"] == pytest.approx(0.6)
    assert report["macro_f1"] == pytest.approx(np.mean(f1))
    assert report["weighted_f1"] == pytest.approx(0.4 * 0.75 + 0.3 * 4 / 7 + 0.3 * 0.4)
    assert report["macro_precision"] == pytest.approx(0.5833333)
    assert report["weighted_recall"] == pytest.approx(0.6)  # weighted recall is accuracy
    assert "macro avg" in format_report(report, ["a", "b", "c"])


def test_empty_class_gives_zero_not_nan():
    report = classification_report(np.array([[2, 0], [0, 0]]))
    assert report["precision"][1] == 0 and report["recall"][1] == 0 and report["f1"][1] == 0
    assert report["accuracy"] == 1.0


def test_one_off_and_regression_figures():
    # Off by one: (0->1), (1->2), (2->1); off by two: (2->0): 9 of 10 within one class.
    assert one_off_accuracy(MATRIX) == pytest.approx(0.9)
    assert mean_absolute_error([10, 20, 30], [12, 20, 24]) == pytest.approx(8 / 3)
    assert cumulative_score([10, 20, 30], [12, 20, 24], 5) == pytest.approx(2 / 3)
    assert binary_accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == 0.75


@pytest.mark.parametrize(
    ("y_true", "y_pred", "match"),
    [([0, 1], [0], "length"), ([0, 3], [0, 1], "y_true must be in"), ([0, 1], [0, -1], "y_pred must be in")],
)
def test_bad_input(y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        confusion_matrix(np.array(y_true), np.array(y_pred), 3)


def test_non_square_matrix():
    with pytest.raises(ValueError, match="matrix must be square"):
        classification_report(np.zeros((2, 3)))
