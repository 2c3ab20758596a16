"""Static int8 quantization (export/int8.py) of a real network on real faces, against its float graph."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from export.int8 import compare_outputs, quantize_int8  # noqa: E402
from export.torch_onnx import export_onnx  # noqa: E402
from models.fetch import model_path  # noqa: E402
from models.training.data import fallback_landmarks, list_samples, read_image  # noqa: E402
from models.training.dlib_resnet import DlibFaceDescriptor, fold_affine  # noqa: E402
from models.training.nets import to_input  # noqa: E402
from stream.align import align_faces  # noqa: E402
from tests.conftest import UTKFACE, shared_file  # noqa: E402

SIZE = 112


@pytest.fixture(scope="module")
def float_proto():
    net = fold_affine(DlibFaceDescriptor(model_path("dlib_face_recognition", download=False)))
    return export_onnx(net, torch.zeros(1, 3, SIZE, SIZE), ["descriptor"])


@pytest.fixture(scope="module")
def face_inputs():
    """Network inputs of 48 real UTKFace faces (aligned from the crop's own landmark layout)."""
    shared_file("data", "utkface", "UTKFace")
    samples = list_samples(UTKFACE, 48)
    chips = []
    for path in samples.paths:
        image = read_image(path)
        chips.append(align_faces(image, fallback_landmarks(*image.shape[:2])[None], "dlib_chip_025", SIZE))
    return to_input(torch.from_numpy(np.concatenate(chips))).numpy()


def test_int8_descriptor_keeps_what_the_float_one_says(float_proto, face_inputs):
    quantized = quantize_int8(float_proto, face_inputs[:32])
    kinds = {init.data_type for init in quantized.graph.initializer}
    assert onnx.TensorProto.INT8 in kinds  # weights are int8 ...
    assert sum(node.op_type == "DequantizeLinear" for node in quantized.graph.node) >= 29  # ... in QDQ form
    assert len(quantized.SerializeToString()) < 0.4 * len(float_proto.SerializeToString())
    [(reference, ours)] = compare_outputs(float_proto, quantized, face_inputs[32:])  # faces it never calibrated on

    def unit(v):
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    cosine = (unit(reference) * unit(ours)).sum(axis=1)
    assert cosine.min() > 0.97, cosine
    # Who looks like whom is kept: each face's nearest other face is the same under int8 for most faces.
    def nearest(v):
        distances = np.linalg.norm(v[:, None] - v[None], axis=2) + np.eye(len(v)) * 1e9
        return distances.argmin(axis=1)

    assert (nearest(reference) == nearest(ours)).mean() >= 0.8


def test_int8_needs_real_calibration_and_float32_weights(float_proto, face_inputs):
    from export.torch_onnx import _to_fp16_weights

    with pytest.raises(ValueError, match="calibration"):
        quantize_int8(float_proto, face_inputs[:0])
    half = _to_fp16_weights(onnx.ModelProto.FromString(float_proto.SerializeToString()))
    with pytest.raises(ValueError, match="float32 export"):
        quantize_int8(half, face_inputs[:4])
