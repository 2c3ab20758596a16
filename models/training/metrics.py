"""Evaluation metrics for age groups, years and gender, in plain numpy (no sklearn).

The classification report follows sklearn's ``classification_report`` conventions: per-class precision,
recall, F1 and support; accuracy; macro (unweighted mean over classes) and weighted (by support) averages.
A class with no predictions has precision 0, one with no samples has recall 0 (sklearn's ``zero_division=0``).
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_classes, n_classes)`` int64 counts; rows are true classes, columns predictions.

    Args:
        y_true: ``(n,)`` int class indices in ``0..n_classes-1``.
        y_pred: ``(n,)`` int class indices.
        n_classes: Number of classes.

    Raises:
        ValueError: Different lengths, or an index out of range.
    """
    y_true = np.asarray(y_true, np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, np.int64).reshape(-1)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_pred must have the length of y_true ({len(y_true)}), got {len(y_pred)}")
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if len(values) and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(f"{name} must be in 0..{n_classes - 1}, got {values.min()}..{values.max()}")
    matrix = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def classification_report(matrix: np.ndarray) -> dict[str, np.ndarray | float]:
    """Per-class and averaged figures from a confusion matrix.

    Args:
        matrix: ``(k, k)`` counts, rows true, columns predicted.

    Returns:
        ``precision``, ``recall``, ``f1``, ``support`` as ``(k,)`` arrays; ``accuracy``; ``macro_precision``,
        ``macro_recall``, ``macro_f1``, ``weighted_precision``, ``weighted_recall``, ``weighted_f1`` floats.

    Raises:
        ValueError: ``matrix`` is not square.
    """
    matrix = np.asarray(matrix, np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square (k, k), got {matrix.shape}")
    tp = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    total = support.sum()
    weights = support / total if total > 0 else np.zeros_like(support)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support.astype(np.int64),
        "accuracy": float(tp.sum() / total) if total > 0 else 0.0,
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "weighted_precision": float((precision * weights).sum()),
        "weighted_recall": float((recall * weights).sum()),
        "weighted_f1": float((f1 * weights).sum()),
    }


def format_report(report: dict[str, np.ndarray | float], names: tuple[str, ...] | list[str]) -> str:
    """sklearn-style text table of :func:`classification_report`."""
    lines = [f"{'':>12} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}", ""]
    precision, recall, f1, support = (np.asarray(report[k]) for k in ("precision", "recall", "f1", "support"))
    for i, name in enumerate(names):
        lines.append(f"{name:>12} {precision[i]:9.3f} {recall[i]:9.3f} {f1[i]:9.3f} {int(support[i]):9d}")
    total = int(support.sum())
    lines += ["", f"{'accuracy':>12} {'':>9} {'':>9} {report['accuracy']:9.3f} {total:9d}"]
    for kind in ("macro", "weighted"):
        lines.append(f"{kind + ' avg':>12} {report[kind + '_precision']:9.3f} {report[kind + '_recall']:9.3f} "
                     f"{report[kind + '_f1']:9.3f} {total:9d}")
    return "\n".join(lines)


def mean_absolute_error(true_years: np.ndarray, pred_years: np.ndarray) -> float:
    """Mean ``|pred - true|`` in years (NaN for no samples)."""
    true_years, pred_years = np.asarray(true_years, np.float64), np.asarray(pred_years, np.float64)
    return float(np.abs(pred_years - true_years).mean()) if len(true_years) else float("nan")


def cumulative_score(true_years: np.ndarray, pred_years: np.ndarray, tolerance: float = 5.0) -> float:
    """CS@tolerance: share of estimates within ``tolerance`` years (NaN for no samples)."""
    true_years, pred_years = np.asarray(true_years, np.float64), np.asarray(pred_years, np.float64)
    return float((np.abs(pred_years - true_years) <= tolerance).mean()) if len(true_years) else float("nan")


def one_off_accuracy(matrix: np.ndarray) -> float:
    """Share of predictions in the true group or an adjacent one."""
    matrix = np.asarray(matrix, np.float64)
    k = len(matrix)
    near = np.abs(np.arange(k)[:, None] - np.arange(k)[None, :]) <= 1
    total = matrix.sum()
    return float(matrix[near].sum() / total) if total > 0 else 0.0


def binary_accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    """Share of equal labels (NaN for no samples)."""
    true, pred = np.asarray(true), np.asarray(pred)
    return float((true == pred).mean()) if len(true) else float("nan")
