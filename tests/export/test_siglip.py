"""SigLIP age-group export on a small randomly initialised model (no download): label mapping, checker,
dynamic batch, parity with torch, the manifest as a registry entry, and the stream using it.

Tolerance: max |onnxruntime - torch| <= 1e-4 on the 8 probabilities (observed ~1e-7).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
siglip = pytest.importorskip("export.siglip")
from export._common import session  # noqa: E402
from models.registry import MODELS, get_spec, load_exports, manifest_path, names_for_task, read_manifest  # noqa: E402
from stream.types import AGE_GROUPS  # noqa: E402

# The seed checkpoint's label style, deliberately not in our order.
SHUFFLED = ["age 80 +", "age 31-40", "age 01-10", "age 66-80", "age 11-20", "age 41-55", "age 21-30", "age 56-65"]
NAME = "siglip_tiny_test"
SIDE = 32


def _tiny_model():
    config = transformers.SiglipConfig(
        vision_config={"image_size": SIDE, "patch_size": 16, "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 2, "num_attention_heads": 2},
        text_config={"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 1},
        num_labels=8, id2label=dict(enumerate(SHUFFLED)), label2id={label: i for i, label in enumerate(SHUFFLED)},
    )
    torch.manual_seed(0)
    return transformers.SiglipForImageClassification(config).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("siglip_checkpoint")
    _tiny_model().save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "SiglipImageProcessor", "size": {"height": SIDE, "width": SIDE},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2,
    }))
    return directory


@pytest.fixture(scope="module")
def report(export_cache, checkpoint):
    result = siglip.export(str(checkpoint), name=NAME, licence="Apache-2.0")
    yield result
    MODELS.pop(NAME, None)  # the user export was registered from this module's cache


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["age 01-10", "age 11-20", "age 21-30", "age 31-40", "age 41-55", "age 56-65", "age 66-80", "age 80 +"],
         [0, 1, 2, 3, 4, 5, 6, 7]),
        (SHUFFLED, [2, 4, 6, 1, 5, 7, 3, 0]),
        (["1-10", "11 - 20", "21-30", "31-40", "41-55", "56-65", "66-80", "80+"], [0, 1, 2, 3, 4, 5, 6, 7]),
    ],
)
def test_label_order_maps_id2label_onto_age_groups(labels, expected):
    assert siglip.label_order(dict(enumerate(labels))) == expected
    assert siglip.label_order({str(i): label for i, label in enumerate(labels)}) == expected


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (["age 01-10"] * 7, "must have 8 labels"),
        (["01-10", "11-20", "21-30", "31-40", "41-55", "56-65", "66-80", "01-10"], "name the same age range"),
        (["01-10", "11-20", "21-30", "31-40", "41-50", "56-65", "66-80", "80+"], "no label for age group '41-55'"),
        (["01-10", "11-20", "21-30", "31-40", "41-55", "56-65", "66-80", "old"], "names no age range"),
    ],
)
def test_label_order_rejects_unmappable_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        siglip.label_order(dict(enumerate(labels)))


def test_checker_passes_and_opset_is_pinned(report, export_cache):
    model = onnx.load(str(export_cache / f"{NAME}.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == siglip.OPSET
    assert report["max_abs_diff"] <= siglip.TOLERANCE


@pytest.mark.parametrize("batch", [1, 3])
def test_output_is_softmax_in_age_group_order(report, export_cache, batch):
    x = np.random.default_rng(batch).uniform(-1, 1, (batch, 3, SIDE, SIDE)).astype(np.float32)
    (probs,) = session(export_cache / f"{NAME}.onnx").run(None, {"pixel_values": x})
    model = _tiny_model()  # same seed, same weights as the exported one
    with torch.no_grad():
        logits = model(pixel_values=torch.from_numpy(x)).logits.numpy()
    by_label = {SHUFFLED[i]: i for i in range(8)}
    columns = [by_label["age " + group.replace("+", " +")] for group in AGE_GROUPS]
    expected = torch.softmax(torch.from_numpy(logits[:, columns]), dim=1).numpy()
    assert probs.shape == (batch, 8)
    np.testing.assert_allclose(probs, expected, atol=siglip.TOLERANCE, rtol=0)


def test_fp16_export_within_its_tolerance(checkpoint, tmp_path):
    fp16 = siglip.export(str(checkpoint), name=NAME, licence="Apache-2.0", fp16=True, out_dir=tmp_path,
                         model=_tiny_model())
    assert fp16["max_abs_diff"] <= siglip.TOLERANCE_FP16
    assert not (tmp_path / "manifests").exists()  # outside the cache: no manifest


def test_manifest_is_a_registry_entry_with_licence(report, export_cache):
    spec = read_manifest(manifest_path(NAME))
    assert (spec.task, spec.family, spec.input_size, spec.color) == ("age_group", "age_group8", (SIDE, SIDE), "RGB")
    assert spec.mean == (127.5, 127.5, 127.5) and spec.std == (127.5, 127.5, 127.5)
    assert spec.licence == "Apache-2.0" and spec.commercial_use and spec.alignment == "mtcnn_box"
    assert NAME in names_for_task("age_group")
    assert get_spec(NAME).sha256 == spec.sha256


def test_stream_uses_the_export_as_its_age_classifier(report):
    from stream.classify import build_classifiers
    from stream.config import load_config, replace

    config = load_config()
    config = replace(config, "classifier", age_model=NAME, gender_model="none")
    (classifier,) = build_classifiers(config.classifier, config.models, config.runtime)
    out = classifier.predict(np.random.default_rng(0).integers(0, 255, (3, SIDE, SIDE, 3), dtype=np.uint8))
    assert out["age_group_probs"].shape == (3, 8)
    np.testing.assert_allclose(out["age_group_probs"].sum(axis=1), 1.0, atol=1e-5)


def test_builtin_name_refuses_a_checkpoint_with_other_preprocessing(report, checkpoint):
    with pytest.raises(ValueError, match="export it under another --name"):
        siglip.export(str(checkpoint), name="siglip_age", model=_tiny_model())


def test_user_export_needs_a_licence(report, checkpoint):
    with pytest.raises(ValueError, match="licence"):
        siglip.export(str(checkpoint), name="no_licence", model=_tiny_model())


def test_a_bad_manifest_is_skipped_not_fatal(report, export_cache, caplog):
    bad = manifest_path("broken")
    bad.write_text("{not json")
    try:
        assert "broken" not in load_exports()
        assert "cannot read it" in caplog.text
    finally:
        bad.unlink()


@pytest.mark.parametrize(("drop", "match"), [("licence", "missing field"), ("manifest_version", "manifest_version")])
def test_read_manifest_names_what_is_missing(report, tmp_path, drop, match):
    record = json.loads(manifest_path(NAME).read_text())
    del record[drop]
    path = tmp_path / f"{NAME}.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=match):
        read_manifest(path)
