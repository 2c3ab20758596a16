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


def test_auto_takes_the_dynamic_yunet_when_present_else_yunet_else_retinaface(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAM_MODELS_DIR", str(tmp_path))  # an empty cache, as on a fresh machine
    monkeypatch.setenv("STREAM_LOCAL_MODELS", "")
    fresh = replace(load_config(), "models", local_dirs=()).models
    assert resolve_detector_name("auto", fresh) == "yunet"  # YuNet comes from a PyPI wheel: no silent fallback
    offline = replace(load_config(), "models", local_dirs=(), download=False).models
    assert resolve_detector_name("auto", offline) == "retinaface"
    shared = replace(load_config(), "models", local_dirs=(str(shared_file("models")),)).models
    assert resolve_detector_name("auto", shared) == "yunet_dynamic"


def test_auto_falls_back_to_retinaface_out_loud_when_yunet_is_corrupt(tmp_path, monkeypatch, caplog):
    from models.fetch import model_path

    retinaface = model_path("retinaface")  # the test machine's verified copy
    monkeypatch.setenv("STREAM_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("STREAM_LOCAL_MODELS", "")
    (tmp_path / "retinaface_mobilenet025.onnx").write_bytes(retinaface.read_bytes())
    (tmp_path / "face_detection_yunet_2023mar.onnx").write_bytes(b"not a model")
    config = replace(load_config(), "models", local_dirs=())
    with caplog.at_level("WARNING"):
        detector = build_detector(config.detector, config.models, config.runtime)
    assert detector.name == "retinaface"
    text = caplog.text
    assert "corrupt" in text and "falling back to retinaface" in text and "misses more small faces" in text
