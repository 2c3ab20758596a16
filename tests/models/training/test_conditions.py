"""Camera conditions (models.training.conditions): what each does, determinism, the evaluation and the augmentation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.training.conditions import (
    AUGMENTATIONS,
    CONDITIONS,
    FRAME_SIZE,
    Condition,
    apply,
    augment_chips,
    degrade_chip,
    parse_conditions,
    turn,
    turn_points,
)
from tests.conftest import UTKFACE, shared_file


@pytest.fixture(scope="module")
def face():
    """A UTKFace image with its face box and landmarks from the product's detector."""
    from models.training.data import central_face, read_image
    from stream.config import load_config
    from stream.detectors import build_detector

    shared_file("data", "utkface", "UTKFace")
    config = load_config()
    image = read_image(sorted(UTKFACE.glob("*.jpg"))[100])
    box, landmarks, found = central_face(build_detector(config.detector, config.models, config.runtime), image)
    assert found
    return image, box, landmarks


def _laplacian(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_32F).var())


def _face_crop(frame: np.ndarray, points: np.ndarray, half: int = 20) -> np.ndarray:
    x, y = points.mean(0).round().astype(int)
    return frame[y - half : y + half, x - half : x + half]


def test_height_places_the_face_at_that_size_in_a_camera_frame(face):
    image, box, landmarks = face
    for height in (24, 48, 96):
        frame, points = apply(CONDITIONS[f"h{height}"], image, box, landmarks, np.random.default_rng(0))
        assert frame.shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3)
        eye_to_mouth = np.linalg.norm(points[[3, 4]].mean(0) - points[[0, 1]].mean(0))
        scale = height / (box[3] - box[1])
        assert eye_to_mouth == pytest.approx(np.linalg.norm(landmarks[[3, 4]].mean(0) - landmarks[[0, 1]].mean(0))
                                             * scale, rel=1e-4)


@pytest.mark.parametrize("name", ["motion", "defocus", "jpeg", "lowlight", "occlusion", "yaw30", "target"])
def test_each_degradation_changes_the_face_and_is_seeded(face, name):
    image, box, landmarks = face
    base, base_points = apply(CONDITIONS["h64"], image, box, landmarks, np.random.default_rng(0))
    out, points = apply(CONDITIONS[name], image, box, landmarks, np.random.default_rng(0))
    again, _ = apply(CONDITIONS[name], image, box, landmarks, np.random.default_rng(0))
    np.testing.assert_array_equal(out, again)
    crop, reference = _face_crop(out, points).astype(np.float32), _face_crop(base, base_points).astype(np.float32)
    assert np.abs(crop - reference).mean() > 2.0, name
    if name in ("motion", "defocus"):
        assert _laplacian(_face_crop(out, points)) < 0.6 * _laplacian(_face_crop(base, base_points))
    if name == "lowlight":
        # Dimmer, and noisy: the flat grey wall around the face now varies from pixel to pixel.
        assert crop.mean() < reference.mean()
        assert out[:40, :40].std() > 2 * base[:40, :40].std()


def test_yaw_moves_points_the_way_it_moves_pixels():
    image = np.zeros((100, 100, 3), np.uint8)
    image[:, 45:55] = 255  # a vertical bar at the face's centre line
    box = np.array([20, 20, 80, 80], np.float32)
    turned = turn(image, box, 30.0)
    column = int(np.argmax(turned[50, :, 0] > 128))
    moved = turn_points(np.array([[45.0, 50.0]]), box, 30.0)[0, 0]
    assert abs(column - moved) <= 1 and moved > 45  # turned towards the image's right
    np.testing.assert_array_equal(turn(image, box, 0.0), image)


def test_chip_augmentation():
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 255, (6, 64, 64, 3), dtype=np.uint8)
    chips = np.stack([cv2.GaussianBlur(c, (0, 0), 1.0) for c in chips])  # image-like, not pure noise
    np.testing.assert_array_equal(augment_chips(chips, 0.0, np.random.default_rng(1)), chips)
    all_degraded = augment_chips(chips, 1.0, np.random.default_rng(1))
    assert all_degraded.shape == chips.shape and all_degraded.dtype == np.uint8
    assert all((all_degraded[i] != chips[i]).any() for i in range(len(chips)))
    np.testing.assert_array_equal(all_degraded, augment_chips(chips, 1.0, np.random.default_rng(1)))
    small = degrade_chip(chips[0], CONDITIONS["h24"], np.random.default_rng(0))
    assert _laplacian(small) < _laplacian(chips[0])
    assert "clean" not in {c.name for c in AUGMENTATIONS}
    with pytest.raises(ValueError, match=r"share must be in \[0, 1\]"):
        augment_chips(chips, 1.5, rng)


def test_train_flag_applies_the_augmentation_per_step():
    torch = pytest.importorskip("torch")
    from models.training.train import TrainConfig, camera_augmented

    chips = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8))
    assert camera_augmented(chips, TrainConfig(), 0, 0) is chips  # off by default: the committed recipe
    config = TrainConfig(camera_augment=1.0)
    first, again = camera_augmented(chips, config, 0, 3), camera_augmented(chips, config, 0, 3)
    assert torch.equal(first, again) and not torch.equal(first, chips)
    assert not torch.equal(first, camera_augmented(chips, config, 0, 4))


def test_parse_conditions():
    assert [c.name for c in parse_conditions("all")] == list(CONDITIONS)
    assert [c.name for c in parse_conditions("h48, target")] == ["h48", "target"]
    with pytest.raises(ValueError, match="unknown condition nope; valid: all, clean, h96"):
        parse_conditions("h48,nope")
    assert "JPEG q20" in CONDITIONS["target"].describe() and Condition("x").describe() == "image as is"


def test_evaluate_conditions_through_the_product_path():
    from models.training.evaluate import evaluate_conditions, format_conditions

    shared_file("data", "utkface", "UTKFace")
    results = evaluate_conditions(UTKFACE, ["cydral"], parse_conditions("clean,h24"), limit=8)
    assert list(results) == ["clean", "h24"]
    clean, tiny = results["clean"]["models"]["cydral"], results["h24"]["models"]["cydral"]
    assert clean["n"] == tiny["n"] == 8 and clean["detector_misses"] <= 1
    assert tiny["detector_misses"] >= clean["detector_misses"]  # 24 px faces in 720p: the detector sees 12 px
    assert 0 < clean["mae"] < 15 and 0 <= tiny["group_accuracy"] <= 1
    assert results == evaluate_conditions(UTKFACE, ["cydral"], parse_conditions("clean,h24"), limit=8)
    assert "h24" in format_conditions(results)


def test_cli_conditions_flag(tmp_path, capsys):
    import json

    from models.training.evaluate import main

    shared_file("data", "utkface", "UTKFace")
    out = tmp_path / "f.json"
    assert main(["--data", str(UTKFACE), "--limit", "4", "--conditions", "h48", "--no-bench", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data) == {"models", "conditions"} and "cydral" in data["conditions"]["h48"]["models"]
    assert "camera conditions" in capsys.readouterr().out
    assert main(["--data", str(UTKFACE), "--limit", "4", "--conditions", "fog", "--no-bench"]) == 2
    assert "error: unknown condition fog" in capsys.readouterr().err
