"""Association of tracks with detections: IoU, a minimum-cost assignment, and the gated match.

The assignment solver is a small pure-numpy Hungarian (shortest augmenting path) so the tracker needs nothing
beyond numpy.
"""

from __future__ import annotations

import numpy as np


def iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes: the tracker's association cost, and the benchmarks' matching rule.

    Args:
        a: ``(n, 4)`` xyxy boxes, any real dtype.
        b: ``(m, 4)`` xyxy boxes, any real dtype.

    Returns:
        ``(n, m)`` float64 IoU in [0, 1].
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    # Degenerate (zero-area) boxes overlap nothing rather than dividing by zero.
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment of rows to columns (the Hungarian problem).

    Shortest augmenting path algorithm (Crouse, 2016), as in ``scipy.optimize.linear_sum_assignment``,
    with the inner loop vectorized, which is quick enough for the tens of faces in a frame, so the
    tracker needs no scipy.

    Args:
        cost: ``(n, m)`` finite cost matrix.

    Returns:
        ``(rows, cols)``: two int64 arrays of length ``min(n, m)``, rows ascending, such that
        ``cost[rows, cols].sum()`` is minimal.

    Raises:
        ValueError: If ``cost`` is not 2-D or holds non-finite values.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be a 2-D array, got shape {cost.shape}")
    if not np.isfinite(cost).all():
        raise ValueError("cost must hold only finite values")
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:
        cost = cost.T
    n_rows, n_cols = cost.shape
    u = np.zeros(n_rows)
    v = np.zeros(n_cols)
    col4row = np.full(n_rows, -1, dtype=np.int64)
    row4col = np.full(n_cols, -1, dtype=np.int64)
    for cur_row in range(n_rows):
        shortest = np.full(n_cols, np.inf)
        path = np.full(n_cols, -1, dtype=np.int64)
        visited_rows = np.zeros(n_rows, dtype=bool)
        visited_cols = np.zeros(n_cols, dtype=bool)
        min_val = 0.0
        i = cur_row
        sink = -1
        while sink < 0:
            visited_rows[i] = True
            reduced = min_val + cost[i] - u[i] - v
            better = ~visited_cols & (reduced < shortest)
            shortest[better] = reduced[better]
            path[better] = i
            candidates = np.where(visited_cols, np.inf, shortest)
            lowest = candidates.min()
            ties = np.flatnonzero(candidates == lowest)
            # Among equally short paths prefer a free column: it ends the search now.
            free = ties[row4col[ties] < 0]
            j = int(free[0] if len(free) else ties[0])
            min_val = float(lowest)
            visited_cols[j] = True
            if row4col[j] < 0:
                sink = j
            else:
                i = int(row4col[j])
        # Update the dual variables so reduced costs stay non-negative.
        u[cur_row] += min_val
        others = np.flatnonzero(visited_rows)
        others = others[others != cur_row]
        u[others] += min_val - shortest[col4row[others]]
        v[visited_cols] -= min_val - shortest[visited_cols]
        # Augment along the path back to cur_row.
        j = sink
        while True:
            i = int(path[j])
            row4col[j] = i
            col4row[i], j = j, int(col4row[i])
            if i == cur_row:
                break
    rows = np.arange(n_rows, dtype=np.int64)
    if transposed:
        order = np.argsort(col4row)
        return col4row[order], rows[order]
    return rows, col4row


def match(track_xyxy: np.ndarray, det_xyxy: np.ndarray, max_cost: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Associate tracks with detections by IoU with a minimum-cost assignment of ``1 - IoU``.

    A pair can match only if the boxes overlap and ``1 - IoU <= max_cost`` (ByteTrack's
    ``match_thresh``); requiring overlap keeps ``max_cost = 1`` from pairing disjoint boxes.

    Args:
        track_xyxy: ``(n, 4)`` predicted track boxes.
        det_xyxy: ``(m, 4)`` detection boxes.
        max_cost: Largest accepted ``1 - IoU``.

    Returns:
        ``(matches, unmatched_tracks, unmatched_dets)``: ``(k, 2)`` int64 pairs ``(track, det)``
        in ascending track order, and the int64 indices left over on each side.
    """
    n, m = len(track_xyxy), len(det_xyxy)
    if n == 0 or m == 0:
        return np.empty((0, 2), np.int64), np.arange(n, dtype=np.int64), np.arange(m, dtype=np.int64)
    iou = iou_xyxy(track_xyxy, det_xyxy)
    cost = 1.0 - iou
    allowed = (iou > 0.0) & (cost <= max_cost)
    # Forbidden pairs cost more than any allowed one (all allowed costs are <= 1), so the solver
    # first maximizes the number of allowed matches, then minimizes their cost; the forbidden
    # pairs it still has to place in a rectangular assignment are dropped below.
    cost = np.where(allowed, cost, 2.0)
    rows, cols = linear_sum_assignment(cost)
    keep = allowed[rows, cols]
    matches = np.stack([rows[keep], cols[keep]], axis=1)
    unmatched_tracks = np.setdiff1d(np.arange(n), matches[:, 0]).astype(np.int64)
    unmatched_dets = np.setdiff1d(np.arange(m), matches[:, 1]).astype(np.int64)
    return matches, unmatched_tracks, unmatched_dets
