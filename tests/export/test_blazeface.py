"""BlazeFace export: checker, dynamic batch, parity with TFLite, mouth-corner estimate, detector on real faces.

Tolerance: max |onnxruntime - TFLite| <= 2e-3 on the raw outputs (regressors are in input pixels, 0..192;
observed ~1e-4). Without a TFLite interpreter the comparison uses tests/data/blazeface_golden.npz (made with
``python -m export.blazeface --write-golden tests/data/blazeface_golden.npz``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from tests.conftest import shared_file
from tests.stream import test_detectors as detector_checks

pytest.importorskip("tflite2onnx")
blazeface = pytest.importorskip("export.blazeface")
from export._common import session  # noqa: E402
from models.registry import get_spec  # noqa: E402
from stream.detectors.blazeface import MOUTH_HALF_WIDTH, five_landmarks  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "blazeface_golden.npz"
FILE = "blazeface_full_range.onnx"


@pytest.fixture(scope="module")
def report(export_cache):
    return blazeface.export()


@pytest.fixture(scope="module")
def runner(report, export_cache):
    return session(export_cache / FILE)


def test_checker_passes_and_opset_is_pinned(report, export_cache):
    model = onnx.load(str(export_cache / FILE))
    onnx.checker.check_model(model, full_check=True)
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == blazeface.OPSET
    assert [o.name for o in model.graph.output] == list(blazeface.OUTPUT_NAMES)


@pytest.mark.parametrize("batch", [1, 3])
def test_dynamic_batch(runner, batch):
    x = np.zeros((batch, 3, 192, 192), np.float32)
    regressors, classificators = runner.run(list(blazeface.OUTPUT_NAMES), {"input": x})
    assert regressors.shape == (batch, 2304, 16) and classificators.shape == (batch, 2304, 1)


def test_batched_rows_equal_single_runs(runner):
    x = np.ascontiguousarray(blazeface.parity_inputs(seed=3, batch=3).transpose(0, 3, 1, 2))
    batched = runner.run(None, {"input": x})
    for i in range(3):
        single = runner.run(None, {"input": x[i : i + 1]})
        for b, s in zip(batched, single, strict=True):
            np.testing.assert_allclose(b[i : i + 1], s, atol=1e-5, rtol=0)


def test_onnxruntime_matches_tflite(report, export_cache):
    if report["max_abs_diff"] is None:
        pytest.skip("no TFLite interpreter installed; the golden test covers parity")
    assert report["max_abs_diff"] <= blazeface.TOLERANCE


def test_onnxruntime_matches_the_golden_tflite_outputs(runner):
    golden = np.load(GOLDEN)
    x = np.ascontiguousarray(blazeface.parity_inputs(seed=0, batch=1).transpose(0, 3, 1, 2))
    regressors, classificators = runner.run(list(blazeface.OUTPUT_NAMES), {"input": x})
    np.testing.assert_allclose(classificators[0, :, 0], golden["classificators"], atol=blazeface.TOLERANCE, rtol=0)
    np.testing.assert_allclose(regressors[0, golden["anchors"]], golden["regressors"], atol=blazeface.TOLERANCE,
                               rtol=0)


def test_fp16_export_within_its_tolerance(report, tmp_path):
    pytest.importorskip("onnxconverter_common")
    fp16 = blazeface.export(fp16=True, out_dir=tmp_path)
    if fp16["max_abs_diff"] is None:
        pytest.skip("no TFLite interpreter installed")
    assert fp16["max_abs_diff"] <= blazeface.TOLERANCE_FP16


def test_registry_takes_the_sha256_from_the_manifest(report, export_cache):
    assert get_spec("blazeface").sha256 == hashlib.sha256((export_cache / FILE).read_bytes()).hexdigest()


def test_export_is_byte_deterministic(report, export_cache, tmp_path):
    blazeface.export(out_dir=tmp_path)
    assert (tmp_path / FILE).read_bytes() == (export_cache / FILE).read_bytes()


@pytest.mark.parametrize("roll_deg", [0.0, 20.0, -35.0])
def test_mouth_corners_follow_the_eye_line(roll_deg):
    # Six keypoints of an upright face, rotated by roll_deg about the nose.
    upright = np.array([[-30, -20], [30, -20], [0, 5], [0, 30], [-60, -10], [60, -10]], np.float32)
    angle = np.deg2rad(roll_deg)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    points = five_landmarks((upright @ rotation.T + 100)[None])[0]
    expected_upright = np.array([[-30, -20], [30, -20], [0, 5], [-60 * MOUTH_HALF_WIDTH, 30],
                                 [60 * MOUTH_HALF_WIDTH, 30]], np.float32)
    np.testing.assert_allclose(points, expected_upright @ rotation.T + 100, atol=1e-4)


def test_five_landmarks_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"keypoints must have shape \(k, 6, 2\)"):
        five_landmarks(np.zeros((2, 5, 2), np.float32))


def test_detector_finds_the_six_faces_with_ordered_landmarks(report):
    image = cv2.imread(str(shared_file("videos", "multiface.jpg")))
    detector_checks.test_detector_finds_the_six_faces_with_ordered_landmarks("blazeface", image)
    detector_checks.test_boxes_are_in_frame_pixels_at_any_frame_size("blazeface", image)


def test_make_batch_dynamic_names_a_resize_without_constant_sizes():
    from onnx import TensorProto, helper

    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="up")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2]),
                      helper.make_tensor_value_info("sizes", TensorProto.INT64, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
    )
    with pytest.raises(ValueError, match="Resize node 'up' has no constant sizes"):
        blazeface.make_batch_dynamic(helper.make_model(graph))
