"""Session set-up: denormal weights are flushed without changing what a model computes."""

import numpy as np
import onnxruntime as ort
import pytest

from models.fetch import ModelError, model_path
from stream.config import RuntimeConfig
from stream.runtime import RuntimeUnavailable, create_session, flush_denormal_weights, providers_for


@pytest.fixture(scope="module")
def age_model_path():
    try:
        return model_path("cydral_age", download=False)
    except ModelError as error:
        pytest.skip(str(error))


def test_denormal_weights_are_flushed_and_outputs_do_not_change(age_model_path):
    patched, flushed = flush_denormal_weights(age_model_path)
    assert patched is not None and flushed > 0  # the Cydral age network ships 6,667 denormal weights
    rng = np.random.default_rng(0)
    chips = ((rng.integers(0, 256, (4, 3, 64, 64)) - 120) / 256).astype(np.float32)
    original = ort.InferenceSession(str(age_model_path), providers=["CPUExecutionProvider"])
    fast = create_session(age_model_path, RuntimeConfig(device="cpu"), "cydral_age")
    name = original.get_inputs()[0].name
    np.testing.assert_allclose(fast.run(None, {name: chips})[0], original.run(None, {name: chips})[0], atol=1e-6)


def test_models_without_denormals_are_left_alone():
    retinaface = model_path("retinaface", download=False)
    assert flush_denormal_weights(retinaface) == (None, 0)


def test_device_choice():
    assert providers_for("cpu") == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(RuntimeUnavailable, match="--device cuda: this onnxruntime has no CUDA provider"):
            providers_for("cuda")
        assert providers_for("auto") == ["CPUExecutionProvider"]


def test_unloadable_model_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(RuntimeUnavailable, match="could not be loaded"):
        create_session(bad, RuntimeConfig(device="cpu"), "bad")
