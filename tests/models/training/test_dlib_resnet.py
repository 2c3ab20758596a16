"""dlib's face-recognition ResNet read into torch: structure, dlib's add_prev, and descriptors of real faces."""

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.fetch import model_path  # noqa: E402
from models.training.dlib_resnet import (  # noqa: E402
    CHIP,
    DlibFaceDescriptor,
    DlibTrunk,
    _add_padded,
    fold_affine,
    read_layers,
)
from models.training.nets import to_input  # noqa: E402
from stream.align import align_faces  # noqa: E402
from tests.conftest import shared_file  # noqa: E402


@pytest.fixture(scope="module")
def dlib_path():
    return model_path("dlib_face_recognition", download=False)


@pytest.fixture(scope="module")
def descriptor(dlib_path):
    return DlibFaceDescriptor(dlib_path).eval()


def test_reads_the_published_architecture(dlib_path):
    layers = read_layers(dlib_path)
    convs = [layer for layer in layers if layer.kind == "con"]
    assert len(convs) == 29
    assert convs[0].ints[:5] == [32, 7, 7, 2, 2]  # 32 filters 7x7, stride 2
    assert sum(layer.kind == "add_prev" for layer in layers) == 14
    assert layers[-1].kind == "fc" and layers[-1].ints == [128, 256]
    affine = next(layer for layer in layers if layer.kind == "affine")
    assert affine.params is not None and affine.params.size == 2 * 32  # gamma and beta of the first conv


def test_rejects_a_file_that_is_not_a_dlib_net(tmp_path):
    path = tmp_path / "x.dat"
    path.write_bytes(b"\x00" * 256)
    with pytest.raises(ValueError, match="not a dlib"):
        read_layers(path)


def test_add_prev_zero_pads_the_smaller_tensor_at_the_end():
    main = torch.ones(1, 4, 2, 2)
    skip = torch.full((1, 2, 3, 3), 10.0)
    out = _add_padded(main, skip)
    assert out.shape == (1, 4, 3, 3)
    assert out[0, 0, 0, 0] == 11 and out[0, 0, 2, 2] == 10  # only the skip reaches the last row/column
    assert out[0, 3, 0, 0] == 1 and out[0, 3, 2, 2] == 0  # channels past the skip's: the main branch alone


def test_trunk_is_the_descriptor_without_its_last_layer(dlib_path, descriptor):
    trunk = DlibTrunk(dlib_path)
    assert all(p.requires_grad for p in trunk.parameters())
    x = torch.randn(2, 3, CHIP, CHIP) * 0.3
    with torch.no_grad():
        np.testing.assert_allclose((trunk(x) @ descriptor.fc).numpy(), descriptor(x).numpy(), atol=1e-4)
        assert trunk(torch.randn(2, 3, 112, 112)).shape == (2, DlibTrunk.FEATURES)


def test_folded_export_is_the_same_function_without_shape_arithmetic(dlib_path, descriptor):
    onnx = pytest.importorskip("onnx")
    from export.torch_onnx import export_onnx, parity

    folded = fold_affine(descriptor)
    assert not any(type(m).__name__ == "_ConvAffine" for m in folded.modules())
    assert any(type(m).__name__ == "_ConvAffine" for m in descriptor.modules())  # the original is untouched
    x = torch.randn(3, 3, CHIP, CHIP) * 0.3
    with torch.no_grad():
        np.testing.assert_allclose(folded(x).numpy(), descriptor(x).numpy(), atol=1e-4)
    proto = export_onnx(folded, torch.zeros(1, 3, 112, 112), ["descriptor"])
    ops = [node.op_type for node in proto.graph.node]
    # Static shapes: nothing reads a tensor's shape at run time (pad sizes are constants, folded on load), and a
    # Pad only where a block's two branches differ in size (3 of the 14 blocks).
    assert "Shape" not in ops and ops.count("Pad") <= 5 and ops.count("Add") == 14
    assert ops.count("Conv") == 29 and "Mul" not in ops[: ops.index("Gemm") if "Gemm" in ops else None]
    assert parity(folded, proto, x[:, :, :112, :112].numpy()) < 1e-4
    assert isinstance(proto, onnx.ModelProto)


def _chips(clip: str, default_detector, frames=(0, 40)) -> np.ndarray:
    capture = cv2.VideoCapture(str(shared_file("videos", clip)))
    chips = []
    for index in frames:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
        assert ok
        faces = default_detector.detect(frame)
        chips.append(align_faces(frame, faces.landmarks[:1], "dlib_chip_025", CHIP))
    capture.release()
    return np.concatenate(chips)


def test_descriptors_tell_people_apart_on_real_video(descriptor, default_detector):
    # dlib's verification threshold is 0.6: two frames of one person fall under it, a man and a woman far over.
    clips = ["talking_man_512.mp4", "talking_woman_512.mp4", "man_glasses_720x1280.mp4", "woman_1280x720.mp4"]
    chips = np.concatenate([_chips(clip, default_detector) for clip in clips])
    with torch.no_grad():
        d = descriptor(to_input(torch.from_numpy(chips))).numpy()
    distance = np.linalg.norm(d[:, None] - d[None], axis=2)
    person = np.repeat(np.arange(len(clips)), 2)
    same = person[:, None] == person[None]
    off_diagonal = ~np.eye(len(d), dtype=bool)
    assert distance[same & off_diagonal].max() < 0.45
    men, women = np.isin(person, [0, 2]), np.isin(person, [1, 3])
    assert distance[np.ix_(men, women)].min() > 0.7
