"""Every registered detector on real faces: boxes, scores and ordered landmarks in frame pixels."""

import cv2
import numpy as np
import pytest

from models.fetch import ModelError
from stream.config import load_config, replace
from stream.detectors import build_detector, detector_names, resolve_detector_name
from tests.conftest import shared_file

DETECTORS = [n for n in detector_names() if n != "auto"]


@pytest.fixture(scope="module")
def multiface():
    return cv2.imread(str(shared_file("videos", "multiface.jpg")))


def _build(name):
    config = replace(load_config(), "detector", name=name)
    try:
        return build_detector(config.detector, replace(config, "models", download=False).models, config.runtime)
    except ModelError as error:
        pytest.skip(f"{name}: {error}")


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_finds_the_six_faces_with_ordered_landmarks(name, multiface):
    faces = _build(name).detect(multiface)
    confident = faces[faces.score >= 0.5]
    assert len(confident) == 6
    lm = confident.landmarks
    boxes = confident.xyxy
    # Landmarks inside their box, left eye left of right eye, eyes above the mouth.
    assert (lm[..., 0] >= boxes[:, None, 0] - 2).all() and (lm[..., 0] <= boxes[:, None, 2] + 2).all()
    assert (lm[:, 0, 0] < lm[:, 1, 0]).all() and (lm[:, 3, 0] < lm[:, 4, 0]).all()
    assert (lm[:, :2, 1].max(axis=1) < lm[:, 3:, 1].min(axis=1)).all()


@pytest.mark.parametrize("name", ["retinaface", "yunet_dynamic", "yunet"])
def test_boxes_are_in_frame_pixels_at_any_frame_size(name, multiface):
    detector = _build(name)
    small = detector.detect(multiface)
    big_image = cv2.resize(multiface, None, fx=1.7, fy=1.7, interpolation=cv2.INTER_LINEAR)
    big = detector.detect(big_image)
    small, big = small[small.score >= 0.5], big[big.score >= 0.5]
    order_s, order_b = np.argsort(small.xyxy[:, 0]), np.argsort(big.xyxy[:, 0])
    np.testing.assert_allclose(big.xyxy[order_b] / 1.7, small.xyxy[order_s], atol=6)
    # A non-square crop also works (padding to the stride never shifts boxes).
    crop = detector.detect(np.ascontiguousarray(multiface[:, 300:]))
    assert len(crop[crop.score >= 0.5]) >= 3


def test_no_faces_gives_empty(default_detector):
    faces = default_detector.detect(np.zeros((360, 640, 3), np.uint8))
    assert len(faces) == 0 and faces.landmarks.shape == (0, 5, 2)


def test_unknown_detector_lists_valid_names():
    with pytest.raises(ValueError, match="unknown detector 'nope'; valid detectors: auto, yunet"):
        resolve_detector_name("nope", load_config().models)


def test_auto_prefers_yunet_when_present_else_pypi_retinaface(tmp_path, monkeypatch):
    models = load_config().models
    monkeypatch.setenv("STREAM_MODELS_DIR", str(tmp_path))
    assert resolve_detector_name("auto", replace(load_config(), "models", local_dirs=()).models) == "retinaface"
    if (shared_file("models") / "face_detection_yunet_2026may.onnx").exists():
        assert resolve_detector_name("auto", models) == "yunet_dynamic"
