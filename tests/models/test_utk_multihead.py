"""The committed utk_multihead.onnx: checksum pinned in the registry, runs through the product's wrapper."""

import dataclasses

import cv2
import numpy as np

from models.fetch import REPO_ROOT, model_path, sha256_of
from models.registry import Trained, get_spec
from stream.align import align_faces
from stream.classify import MultiHeadClassifier, build_classifiers
from stream.config import replace
from stream.types import AGE_GROUP_PROBS, AGE_YEARS, P_FEMALE
from tests.conftest import UTKFACE, shared_file


def test_registry_entry_matches_committed_file():
    spec = get_spec("utk_multihead")
    (source,) = spec.sources
    assert isinstance(source, Trained)
    path = REPO_ROOT / source.path
    assert path.stat().st_size < 15e6
    assert sha256_of(path) == spec.sha256
    assert model_path("utk_multihead", download=False) == path
    assert spec.family == "multihead" and spec.task == "age_gender" and not spec.commercial_use
    assert "non-commercial" in spec.licence.lower()
    assert (path.with_suffix(".md")).is_file()


def test_committed_file_has_no_denormal_weights():
    from models.training.train import count_denormal_weights

    # Denormal weights run through the x86 slow path (~10x slower on CPU).
    assert count_denormal_weights(model_path("utk_multihead", download=False)) == 0


def test_runs_through_multihead_classifier(config, default_detector):
    shared_file("data", "utkface", "UTKFace")
    section = replace(config, "classifier", age_model="utk_multihead", gender_model="none").classifier
    (classifier,) = build_classifiers(section, config.models, config.runtime)
    assert isinstance(classifier, MultiHeadClassifier)
    assert classifier.chip_size == get_spec("utk_multihead").input_size[0]
    names = sorted(p.name for p in UTKFACE.glob("*.jpg"))[::997][:16]
    chips, ages, genders = [], [], []
    for name in names:
        image = cv2.imread(str(UTKFACE / name))
        faces = default_detector.detect(image)
        if len(faces) == 0:
            continue
        chips.append(align_faces(image, faces.landmarks[:1], classifier.template, classifier.chip_size))
        ages.append(int(name.split("_")[0]))
        genders.append(int(name.split("_")[1]))
    out = classifier.predict(np.concatenate(chips))
    assert out[AGE_GROUP_PROBS].shape == (len(chips), 8)
    np.testing.assert_allclose(out[AGE_GROUP_PROBS].sum(axis=1), 1, rtol=1e-5)
    assert np.abs(out[AGE_YEARS] - np.array(ages)).mean() < 10
    assert ((out[P_FEMALE] >= 0.5) == np.array(genders)).mean() >= 0.75
    side = classifier.chip_size
    empty = classifier.predict(np.zeros((0, side, side, 3), np.uint8))
    assert all(len(v) == 0 for v in empty.values())


def test_spec_is_consistent_with_training():
    import json

    import onnx

    from models.training.nets import MEAN_RGB
    from models.training.train import TEMPLATES

    spec = get_spec("utk_multihead")
    path = model_path("utk_multihead", download=False)
    # The committed file's own training record says which backbone, chip size and alignment it was trained with.
    run = json.loads(path.with_suffix(".train.json").read_text(encoding="utf-8"))["config"]
    assert spec.mean == MEAN_RGB and spec.alignment == TEMPLATES[run["backbone"]] and spec.color == "RGB"
    # The graph takes the descriptor ensemble's chip when there is one, else the net's.
    side = run.get("ensemble_size") or run["size"]
    assert dataclasses.asdict(spec)["input_size"] == (side, side)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [3, side, side]
