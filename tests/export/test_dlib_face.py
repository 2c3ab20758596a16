"""dlib face-embedding export: checker, parity with the torch reader, manifest/registry, and people told apart.

Tolerance: max |onnxruntime - torch| <= 1e-4 on the 128-d descriptor (observed ~2e-7).
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import onnx
import pytest

from tests.conftest import shared_file

torch = pytest.importorskip("torch")
dlib_face = pytest.importorskip("export.dlib_face")
from export._common import session  # noqa: E402
from models.fetch import ModelError, find_local, model_path  # noqa: E402
from models.registry import get_spec  # noqa: E402


@pytest.fixture(scope="module")
def report(export_cache):
    return dlib_face.export()


def test_checker_passes_and_batch_is_dynamic(report, export_cache):
    path = export_cache / "dlib_face_embedding.onnx"
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    out = session(path).run(None, {"input": np.zeros((3, 3, 150, 150), np.float32)})
    assert [o.shape for o in out] == [(3, 128)]


def test_onnxruntime_matches_the_torch_reader(report, export_cache):
    assert report["max_abs_diff"] <= dlib_face.TOLERANCE
    # Independent inputs, against the unfolded reader of the original file (checked against its sha256).
    x = (np.random.default_rng(7).random((2, 3, 150, 150), dtype=np.float32) - 0.5) * 0.8
    with torch.no_grad():
        from models.training.dlib_resnet import DlibFaceDescriptor

        expected = DlibFaceDescriptor(dlib_face.original_layers())(torch.from_numpy(x))
    actual = session(export_cache / "dlib_face_embedding.onnx").run(None, {"input": x})[0]
    np.testing.assert_allclose(actual, expected.numpy(), atol=dlib_face.TOLERANCE, rtol=0)


def test_registry_takes_the_sha256_from_the_manifest(report, export_cache):
    data = (export_cache / "dlib_face_embedding.onnx").read_bytes()
    spec = get_spec("dlib_face_embedding")
    assert spec.sha256 == hashlib.sha256(data).hexdigest()
    assert spec.task == "face_embedding" and spec.commercial_use and spec.licence.startswith("CC0")
    assert find_local(spec) == export_cache / "dlib_face_embedding.onnx"


def test_missing_export_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAM_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelError, match=r"python -m export\.dlib_face"):
        model_path("dlib_face_embedding", download=True)


def test_the_runtime_wrapper_tells_people_apart_on_real_video(report, config, default_detector):
    from stream.align import align_faces
    from stream.tracking.appearance import build_embedder

    embedder = build_embedder("dlib_face_embedding", config.models, config.runtime)
    assert embedder is not None and embedder.chip_size == 150 and embedder.template == "dlib_chip_025"
    clips = ["talking_man_512.mp4", "talking_woman_512.mp4", "woman_1280x720.mp4"]
    embeddings = []
    for clip in clips:
        capture = cv2.VideoCapture(str(shared_file("videos", clip)))
        for index in (0, 40):
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = capture.read()
            assert ok
            faces = default_detector.detect(frame)
            embeddings.append(embedder.embed(align_faces(frame, faces.landmarks[:1], embedder.template, 150))[0])
        capture.release()
    e = np.array(embeddings)
    distance = np.linalg.norm(e[:, None] - e[None], axis=2)
    person = np.repeat(np.arange(len(clips)), 2)
    same = (person[:, None] == person[None]) & ~np.eye(len(e), dtype=bool)
    assert distance[same].max() < 0.45  # dlib's threshold is 0.6
    assert distance[person[:, None] != person[None]].min() > 0.55
