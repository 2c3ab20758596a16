"""The default CC0 classifiers on real UTKFace faces, through the product's own detector and alignment."""

import cv2
import numpy as np
import pytest

from stream.align import align_faces
from stream.classify import CydralAgeClassifier, _ensure_probabilities
from stream.types import AGE_GROUP_PROBS, AGE_YEARS, P_FEMALE
from tests.conftest import UTKFACE, shared_file


def test_bins_sum_into_groups_and_80_plus_is_unreachable():
    assert CydralAgeClassifier.BIN_TO_GROUP.shape == (81, 8)
    assert (CydralAgeClassifier.BIN_TO_GROUP.sum(axis=1) == 1).all()
    assert CydralAgeClassifier.BIN_TO_GROUP[:, 7].sum() == 0
    assert CydralAgeClassifier.BIN_TO_GROUP[10, 0] == 1 and CydralAgeClassifier.BIN_TO_GROUP[11, 1] == 1


def test_logits_become_probabilities():
    probs = _ensure_probabilities(np.array([[2.0, -1.0], [0.0, 0.0]], np.float32))
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-6)
    same = np.array([[0.25, 0.75]], np.float32)
    assert _ensure_probabilities(same) is same


def test_empty_batch(default_classifiers):
    for classifier in default_classifiers:
        out = classifier.predict(np.zeros((0, classifier.chip_size, classifier.chip_size, 3), np.uint8))
        assert all(len(v) == 0 for v in out.values())
        with pytest.raises(ValueError, match="chips must be"):
            classifier.predict(np.zeros((1, 7, 7, 3), np.uint8))


def test_default_models_on_real_faces(default_detector, default_classifiers):
    shared_file("data", "utkface", "UTKFace")
    names = sorted(p.name for p in UTKFACE.glob("*.jpg"))[::400][:40]
    errors, correct = [], []
    for name in names:
        age, gender = int(name.split("_")[0]), int(name.split("_")[1])
        image = cv2.imread(str(UTKFACE / name))
        faces = default_detector.detect(image)
        if len(faces) == 0:
            continue
        faces = faces[[int(np.argmax(faces.score))]]
        out = {}
        for classifier in default_classifiers:
            out.update(classifier.predict(align_faces(image, faces.landmarks, classifier.template,
                                                      classifier.chip_size)))
        np.testing.assert_allclose(out[AGE_GROUP_PROBS].sum(axis=1), 1, atol=1e-4)
        errors.append(abs(float(out[AGE_YEARS][0]) - age))
        correct.append((out[P_FEMALE][0] >= 0.5) == (gender == 1))
    assert len(errors) >= 35
    # The default models' published level on UTKFace is MAE ~6.2 and gender ~91%: misaligned chips or a
    # wrong channel order would push these far off.
    assert np.mean(errors) < 9.0
    assert np.mean(correct) > 0.8


@pytest.mark.parametrize("color", ["RGB", "BGR"])
def test_preprocess_is_the_textbook_normalisation(color):
    import dataclasses

    from models.registry import get_spec
    from stream.classify import OnnxClassifier

    spec = dataclasses.replace(get_spec("utk_multihead"), color=color, mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 8.0))

    import onnxruntime as ort

    from models.fetch import model_path

    session = ort.InferenceSession(str(model_path("utk_multihead", download=False)),
                                   providers=["CPUExecutionProvider"])
    classifier = OnnxClassifier(spec, session)
    side = classifier.chip_size
    chips = np.random.default_rng(0).integers(0, 255, (3, side, side, 3), dtype=np.uint8)
    ordered = chips[..., ::-1] if color == "RGB" else chips
    expected = ((ordered.astype(np.float64) - spec.mean) / spec.std).transpose(0, 3, 1, 2)
    out = classifier.preprocess(chips)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(out, expected, atol=1e-5)
