"""``python -m models.training.evaluate``: age/gender accuracy on a UTKFace-named folder through the product's own path.

Each image goes through the configured detector (``stream.detectors.build_detector``) → 5 landmarks →
``stream.align.align_faces`` with each classifier's own template and size → the classifier wrappers of
``stream.classify``. UTKFace images are face-centred crops: the detection nearest the image centre is the face.
When the detector finds none, the miss is counted (``detector_misses``) and the image is still scored through a
fallback: 5 landmarks synthesised from the ``utkface_crop`` template for the whole image
(``models.training.data.fallback_landmarks``).

``--model`` is a registry name (an ``age_gender`` model such as ``utk_multihead`` runs alone) or ``cydral``,
the default pair ``cydral_age`` + ``cydral_gender``; ``AGE+GENDER`` names any pair. Repeat ``--model`` to compare
models on the same detections. ``--split val`` scores the fixed validation split of ``models.training.data``
(seed 0, 10%, stratified by age group and gender), the split the trained model never saw.

``--conditions all`` (or a comma-separated list of ``models.training.conditions.CONDITIONS``) also scores every
model on camera-like versions of each image: the face scaled to 24-96 px in a 1280x720 frame, motion and defocus
blur, JPEG compression, dim light with sensor noise, a covered lower face, turned heads, and ``target`` (48 px,
mild blur, dim light with noise, strong JPEG), each through the same detector → alignment → classifier path on the
whole frame. A detector miss falls back to where the clean image's landmarks land in the frame (counted). A
condition costs a detection on a 1280x720 frame per image: use ``--limit`` (e.g. 1000) for a quick run.

Examples::

    python -m models.training.evaluate --data ../shared/data/utkface/UTKFace --split val \
        --model cydral --model utk_multihead
    python -m models.training.evaluate --data DIR --model utk_multihead --json out.json --plot confusion.png --limit 200
    python -m models.training.evaluate --data DIR --split val --limit 1000 --model cydral --model utk_multihead \
        --conditions all --no-bench
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.training.data import (
    DEFAULT_SEED,
    DEFAULT_VAL_FRACTION,
    GENDERS,
    RACES,
    Samples,
    central_face,
    list_samples,
    read_image,
    select_split,
)
from models.training.metrics import (
    binary_accuracy,
    classification_report,
    confusion_matrix,
    cumulative_score,
    format_report,
    mean_absolute_error,
    one_off_accuracy,
)
from stream.types import AGE_GROUP_PROBS, AGE_GROUPS, AGE_YEARS, P_FEMALE

logger = logging.getLogger(__name__)

#: ``--model`` aliases for pairs.
ALIASES = {"cydral": ("cydral_age", "cydral_gender")}
#: Gender is also reported for faces older than this (children's gender is much harder to see).
ADULT_AGE = 12
_BATCH = 64


@dataclass
class Predictions:
    """Per-image estimates of one model (pair), rows in sample order.

    Attributes:
        group_probs: ``(n, 8)`` float32 age-group probabilities.
        age: ``(n,)`` float32 years.
        p_female: ``(n,)`` float32.
    """

    group_probs: np.ndarray
    age: np.ndarray
    p_female: np.ndarray


def model_pair(name: str) -> tuple[str, str]:
    """``(age_model, gender_model)`` for a ``--model`` value ("none" when one model gives both).

    Raises:
        ValueError: Unknown name, or a model that does not give age and gender.
    """
    from models.registry import get_spec

    if name in ALIASES:
        return ALIASES[name]
    if "+" in name:
        age, gender = name.split("+", 1)
        get_spec(age), get_spec(gender)
        return age, gender
    spec = get_spec(name)
    if spec.task != "age_gender":
        raise ValueError(f"model {name!r} gives only {spec.task}; pass an age_gender model, 'cydral' or AGE+GENDER")
    return name, "none"


def detect_all(detector: object, samples: Samples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(n, 4)`` boxes, ``(n, 5, 2)`` landmarks and ``(n,)`` bool detected, one face per image."""
    boxes = np.zeros((len(samples), 4), np.float32)
    landmarks = np.zeros((len(samples), 5, 2), np.float32)
    found = np.zeros(len(samples), bool)
    for i, path in enumerate(samples.paths):
        boxes[i], landmarks[i], found[i] = central_face(detector, read_image(path))
    return boxes, landmarks, found


def predict_all(classifiers: list, samples: Samples, landmarks: np.ndarray) -> Predictions:
    """Run the classifier wrappers on aligned chips of every image (batched like the runtime)."""
    from stream.align import align_for

    merged: dict[str, list[np.ndarray]] = {AGE_GROUP_PROBS: [], AGE_YEARS: [], P_FEMALE: []}
    for start in range(0, len(samples), _BATCH):
        paths = samples.paths[start : start + _BATCH]
        images = [read_image(p) for p in paths]
        inputs = [(c.template, c.chip_size) for c in classifiers]
        per_image = [align_for(image, landmarks[start + j : start + j + 1], inputs) for j, image in enumerate(images)]
        out = predict_chips(classifiers, [np.concatenate([sets[k] for sets in per_image])
                                          for k in range(len(classifiers))])
        for key in merged:
            merged[key].append(out[key])
    return Predictions(*(np.concatenate(merged[k]).astype(np.float32) for k in (AGE_GROUP_PROBS, AGE_YEARS,
                                                                             P_FEMALE)))


def predict_chips(classifiers: list, chip_sets: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Merged estimates of the classifiers on their chips (``chip_sets[k]`` for ``classifiers[k]``).

    Raises:
        ValueError: The classifiers together give no age groups, years or P(female).
    """
    out: dict[str, np.ndarray] = {}
    for classifier, chips in zip(classifiers, chip_sets, strict=True):
        for key, value in classifier.predict(chips).items():
            # The first model that gives a figure keeps it: the age model comes first, the gender model
            # second, as in the pipeline when a gender model is named.
            if key == P_FEMALE or key not in out:
                out[key] = value
    for key in (AGE_GROUP_PROBS, AGE_YEARS, P_FEMALE):
        if key not in out:
            raise ValueError(f"classifiers {[c.name for c in classifiers]} give no {key!r}")
    return out


def score(samples: Samples, predictions: Predictions, detected: np.ndarray) -> dict[str, object]:
    """All figures for one model as a JSON-ready dict (keys ``n``, ``detector_misses``, ``mae``, ...)."""
    true_group = samples.group
    pred_group = predictions.group_probs.argmax(axis=1)
    pred_gender = (predictions.p_female >= 0.5).astype(np.int64)
    matrix = confusion_matrix(true_group, pred_group, len(AGE_GROUPS))
    report = classification_report(matrix)
    adult = samples.age > ADULT_AGE
    child = ~adult

    def subset(mask: np.ndarray) -> dict[str, float | int]:
        sub = classification_report(confusion_matrix(true_group[mask], pred_group[mask], len(AGE_GROUPS)))
        return {
            "n": int(mask.sum()),
            "mae": mean_absolute_error(samples.age[mask], predictions.age[mask]),
            "group_accuracy": float(sub["accuracy"]),
            "macro_f1": float(sub["macro_f1"]),
            "gender_accuracy": binary_accuracy(samples.gender[mask], pred_gender[mask]),
        }

    per_group = {}
    for g, name in enumerate(AGE_GROUPS):
        entry = subset(true_group == g)
        entry["f1"] = float(np.asarray(report["f1"])[g])
        per_group[name] = entry
    return {
        "n": len(samples),
        "detector_misses": int((~detected).sum()),
        "mae": mean_absolute_error(samples.age, predictions.age),
        "cs5": cumulative_score(samples.age, predictions.age, 5.0),
        "group_accuracy": float(report["accuracy"]),
        "one_off_accuracy": one_off_accuracy(matrix),
        "macro_f1": float(report["macro_f1"]),
        "weighted_f1": float(report["weighted_f1"]),
        "gender_accuracy": binary_accuracy(samples.gender, pred_gender),
        "gender_accuracy_above_12": binary_accuracy(samples.gender[adult], pred_gender[adult]),
        "gender_accuracy_12_and_under": binary_accuracy(samples.gender[child], pred_gender[child]),
        "report": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in report.items()},
        "confusion_matrix": matrix.tolist(),
        "per_age_group": per_group,
        "per_race": {RACES[r]: subset(samples.race == r) for r in range(len(RACES))},
        "per_gender": {GENDERS[g]: subset(samples.gender == g) for g in range(len(GENDERS))},
    }


def bench_ms_per_face(classifiers: list, batch: int = 8, repeats: int = 50) -> float:
    """CPU (or configured device) milliseconds per face for all classifiers on a batch of ``batch`` chips.

    Median over ``repeats`` runs after a warm-up; alignment is not included (it is shared by every model).
    """
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 255, (batch, c.chip_size, c.chip_size, 3), dtype=np.uint8) for c in classifiers]
    for classifier, chips in zip(classifiers, inputs):
        classifier.predict(chips)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for classifier, chips in zip(classifiers, inputs):
            classifier.predict(chips)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000 / batch)


def format_figures(name: str, figures: dict) -> str:
    """The printed report for one model."""
    report = {k: np.asarray(v) if isinstance(v, list) else v for k, v in figures["report"].items()}
    lines = [
        f"== {name}: {figures['n']} faces, detector misses {figures['detector_misses']} (scored via fallback crop)",
        format_report(report, AGE_GROUPS),
        "",
        "confusion matrix (rows true, columns predicted): " + " ".join(f"{g:>6}" for g in AGE_GROUPS),
    ]
    for g, row in zip(AGE_GROUPS, figures["confusion_matrix"]):
        lines.append(f"{g:>48} " + " ".join(f"{v:6d}" for v in row))
    lines += [
        "",
        f"age MAE {figures['mae']:.2f} y   CS@5 {figures['cs5']:.3f}   group accuracy {figures['group_accuracy']:.3f}"
        f"   1-off {figures['one_off_accuracy']:.3f}   macro F1 {figures['macro_f1']:.3f}",
        f"gender accuracy {figures['gender_accuracy']:.3f}   "
        f"above {ADULT_AGE}: {figures['gender_accuracy_above_12']:.3f}"
        f"   {ADULT_AGE} and under: {figures['gender_accuracy_12_and_under']:.3f}",
        "",
        f"{'':>10} {'n':>6} {'MAE':>6} {'F1':>6} {'acc':>6} {'gender':>7}",
    ]
    for label, table in (("age group", figures["per_age_group"]), ("race", figures["per_race"])):
        lines.append(f"per {label}:")
        for key, entry in table.items():
            f1 = entry.get("f1", entry["macro_f1"])
            lines.append(f"{key:>10} {entry['n']:6d} {entry['mae']:6.2f} {f1:6.3f} {entry['group_accuracy']:6.3f} "
                         f"{entry['gender_accuracy']:7.3f}")
    lines.append("(per race: F1 is the macro F1 over age groups within that race)")
    if "ms_per_face" in figures:
        lines.append(f"cost: {figures['ms_per_face']:.3f} ms per face (age+gender, batch of 8, this machine)")
    return "\n".join(lines)


def plot_confusion(matrix: np.ndarray, path: str | Path, title: str = "") -> None:
    """Save a row-normalised confusion matrix with counts as a PNG (drawn with cv2, no matplotlib).

    Raises:
        ValueError: The image cannot be written to ``path``.
    """
    import cv2

    matrix = np.asarray(matrix, np.int64)
    k = len(matrix)
    cell, left, top = 70, 90, 70
    image = np.full((top + cell * k + 40, left + cell * k + 20, 3), 255, np.uint8)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i in range(k):
        for j in range(k):
            x, y = left + j * cell, top + i * cell
            shade = int(255 * (1 - share[i, j]))
            cv2.rectangle(image, (x, y), (x + cell, y + cell), (255, shade, shade), -1)
            cv2.rectangle(image, (x, y), (x + cell, y + cell), (200, 200, 200), 1)
            colour = (255, 255, 255) if share[i, j] > 0.5 else (0, 0, 0)
            cv2.putText(image, str(matrix[i, j]), (x + 8, y + 42), font, 0.5, colour, 1, cv2.LINE_AA)
        cv2.putText(image, AGE_GROUPS[i], (8, top + i * cell + 42), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(image, AGE_GROUPS[i], (left + i * cell + 8, top - 10), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, f"{title} (rows: true, columns: predicted)", (8, 24), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), image):
        raise ValueError(f"path {str(path)!r} cannot be written as a PNG")


def evaluate(data: str | Path, models: list[str], *, split: str = "all", limit: int = 0, seed: int = DEFAULT_SEED,
             val_fraction: float = DEFAULT_VAL_FRACTION, config_path: str | None = None,
             overrides: tuple[str, ...] = (), bench: bool = True) -> dict[str, dict]:
    """Figures for each model on the same images and detections.

    Args:
        data: Folder of UTKFace-named images.
        models: ``--model`` values (see :func:`model_pair`).
        split: "all", "train" or "val" (the fixed split of ``models.training.data``).
        limit: If > 0, an evenly spaced subset of this many images of the split.
        seed: Split seed.
        val_fraction: Split validation share.
        config_path: config.yaml (default: the repo's).
        overrides: ``section.key=value`` config overrides.
        bench: Also measure ``ms_per_face``.

    Returns:
        ``{model: figures}`` with the keys of :func:`score` (plus ``ms_per_face``).
    """
    from stream.classify import build_classifiers
    from stream.config import load_config, replace
    from stream.detectors import build_detector

    config = load_config(config_path, overrides)
    samples = select_split(list_samples(data), split, seed, val_fraction)
    if limit > 0 and limit < len(samples):
        samples = samples.subset(np.linspace(0, len(samples) - 1, limit).round().astype(int))
    detector = build_detector(config.detector, config.models, config.runtime)
    boxes, landmarks, detected = detect_all(detector, samples)
    results = {}
    for name in models:
        age_model, gender_model = model_pair(name)
        section = replace(config, "classifier", age_model=age_model, gender_model=gender_model).classifier
        classifiers = build_classifiers(section, config.models, config.runtime)
        predictions = predict_all(classifiers, samples, landmarks)
        figures = score(samples, predictions, detected)
        if bench:
            figures["ms_per_face"] = bench_ms_per_face(classifiers)
        figures["model"] = {"age_model": age_model, "gender_model": gender_model, "split": split, "seed": seed,
                            "val_fraction": val_fraction, "detector": detector.name}
        results[name] = figures
    return results


def evaluate_conditions(data: str | Path, models: list[str], conditions: list, *, split: str = "val",
                        limit: int = 0, seed: int = DEFAULT_SEED, val_fraction: float = DEFAULT_VAL_FRACTION,
                        config_path: str | None = None, overrides: tuple[str, ...] = ()) -> dict[str, dict]:
    """Figures for each camera condition and model (see ``models.training.conditions``), same images for all.

    Each image's face is found on the clean image first (its box sets the scale; its landmarks are the fallback
    when the detector misses the degraded face); each condition then makes a frame from the image (noise drawn
    from ``numpy.random.default_rng(seed + condition index)``), the detector runs on the whole frame, and every
    model's classifiers run on chips aligned from the detected landmarks.

    Returns:
        ``{condition: {"describe": text, "models": {model: {"n", "detector_misses", "mae", "group_accuracy",
        "gender_accuracy", "gender_accuracy_above_12"}}}}``.
    """
    from models.training.conditions import apply
    from stream.align import align_for
    from stream.classify import build_classifiers
    from stream.config import load_config, replace

    config = load_config(config_path, overrides)
    samples = select_split(list_samples(data), split, seed, val_fraction)
    if limit > 0 and limit < len(samples):
        samples = samples.subset(np.linspace(0, len(samples) - 1, limit).round().astype(int))
    detector = _build_detector(config)
    images = [read_image(p) for p in samples.paths]
    clean = [central_face(detector, image) for image in images]
    built = {}
    for name in models:
        age_model, gender_model = model_pair(name)
        section = replace(config, "classifier", age_model=age_model, gender_model=gender_model).classifier
        built[name] = build_classifiers(section, config.models, config.runtime)
    inputs = sorted({(c.template, c.chip_size) for classifiers in built.values() for c in classifiers})
    results: dict[str, dict] = {}
    adult = samples.age > ADULT_AGE
    for index, condition in enumerate(conditions):
        rng = np.random.default_rng(seed + index)
        chips: dict[tuple[str, int], list[np.ndarray]] = {key: [] for key in inputs}
        misses = 0
        for image, (box, landmarks, _) in zip(images, clean, strict=True):
            frame, reference = apply(condition, image, box, landmarks, rng)
            _, found_landmarks, found = _face_near(detector, frame, reference)
            misses += not found
            for key, chip in zip(inputs, align_for(frame, (found_landmarks if found else reference)[None], inputs),
                                 strict=True):
                chips[key].append(chip)
        stacked = {key: np.concatenate(value) for key, value in chips.items()}
        per_model = {}
        for name, classifiers in built.items():
            out = predict_chips(classifiers, [stacked[(c.template, c.chip_size)] for c in classifiers])
            group = out[AGE_GROUP_PROBS].argmax(axis=1)
            gender = (out[P_FEMALE] >= 0.5).astype(np.int64)
            per_model[name] = {
                "n": len(samples), "detector_misses": misses,
                "mae": mean_absolute_error(samples.age, out[AGE_YEARS]),
                "group_accuracy": float((group == samples.group).mean()),
                "gender_accuracy": binary_accuracy(samples.gender, gender),
                "gender_accuracy_above_12": binary_accuracy(samples.gender[adult], gender[adult]),
            }
        results[condition.name] = {"describe": condition.describe(), "models": per_model}
        logger.info("condition %s done (%d detector misses)", condition.name, misses)
    return results


def _build_detector(config: object) -> object:
    from stream.detectors import build_detector

    return build_detector(config.detector, config.models, config.runtime)  # type: ignore[attr-defined]


def _face_near(detector: object, frame: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """The detection whose landmarks lie nearest ``reference`` (``(5, 2)``), if within half the reference's
    eye-to-mouth distance; else ``(empty box, reference, False)``."""
    faces = detector.detect(frame)  # type: ignore[attr-defined]
    ok = np.isfinite(faces.landmarks).all(axis=(1, 2)) if len(faces) else np.zeros(0, bool)
    if ok.any():
        faces = faces[ok]
        distance = np.linalg.norm(faces.landmarks - reference[None], axis=2).mean(axis=1)
        scale = float(np.linalg.norm(reference[[0, 1]].mean(0) - reference[[3, 4]].mean(0)))
        best = int(np.argmin(distance))
        if distance[best] <= 0.5 * max(scale, 1.0):
            return faces.xyxy[best], faces.landmarks[best], True
    return np.zeros(4, np.float32), reference, False


def format_conditions(results: dict[str, dict]) -> str:
    """The per-condition table: MAE, group accuracy, gender accuracy per model."""
    models = list(next(iter(results.values()))["models"]) if results else []
    head = f"{'condition':<10} {'misses':>6} " + " ".join(f"{m[:22]:>22}" for m in models)
    lines = ["camera conditions (MAE y / group acc / gender acc per model; misses: detector misses, scored via the "
             "clean landmarks)", head]
    for name, entry in results.items():
        first = next(iter(entry["models"].values()))
        cells = " ".join(f"{f['mae']:6.2f} / {f['group_accuracy']:.3f} / {f['gender_accuracy']:.3f}"
                         for f in entry["models"].values())
        lines.append(f"{name:<10} {first['detector_misses']:>6} {cells}   ({entry['describe']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.training.evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder of UTKFace-named images (AGE_GENDER_RACE_*.jpg)")
    parser.add_argument("--model", action="append", default=None,
                        help="registry name of an age_gender model, 'cydral' (default pair) or AGE+GENDER; repeatable")
    parser.add_argument("--split", default="all", choices=("all", "train", "val"), help="fixed split to score")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="split seed")
    parser.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION, help="validation share")
    parser.add_argument("--limit", type=int, default=0, help="evenly spaced subset of this many images")
    parser.add_argument("--json", default=None, help="write the figures here (one model: its dict; several: by name)")
    parser.add_argument("--plot", default=None, help="confusion matrix PNG (several models: name appended)")
    parser.add_argument("--config", default=None, help="config.yaml (default: the repo's)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="config override")
    parser.add_argument("--no-bench", action="store_true", help="skip the per-face cost measurement")
    parser.add_argument("--conditions", default="",
                        help="also score camera conditions: 'all' or names from models.training.conditions "
                             "(clean,h96,h64,h48,h32,h24,motion,defocus,jpeg,lowlight,occlusion,yaw30,yaw50,target)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    models = args.model or ["cydral"]
    try:
        if args.conditions:
            from models.training.conditions import parse_conditions

            conditions = evaluate_conditions(args.data, models, parse_conditions(args.conditions), split=args.split,
                                             limit=args.limit, seed=args.seed, val_fraction=args.val_fraction,
                                             config_path=args.config, overrides=tuple(args.set))
        results = evaluate(args.data, models, split=args.split, limit=args.limit, seed=args.seed,
                           val_fraction=args.val_fraction, config_path=args.config, overrides=tuple(args.set),
                           bench=not args.no_bench)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, figures in results.items():
        print(format_figures(name, figures))
        print()
        if args.plot:
            plot = Path(args.plot)
            if len(results) > 1:
                plot = plot.with_name(f"{plot.stem}_{name.replace('+', '_')}{plot.suffix}")
            plot_confusion(np.asarray(figures["confusion_matrix"]), plot, title=name)
    if len(results) > 1:
        print(f"{'model':>16} {'MAE':>6} {'CS@5':>6} {'acc':>6} {'1-off':>6} {'macroF1':>7} {'80+F1':>6} "
              f"{'gender':>6} {'g>12':>6} {'ms/face':>7}")
        for name, f in results.items():
            print(f"{name:>16} {f['mae']:6.2f} {f['cs5']:6.3f} {f['group_accuracy']:6.3f} {f['one_off_accuracy']:6.3f} "
                  f"{f['macro_f1']:7.3f} {f['per_age_group']['80+']['f1']:6.3f} {f['gender_accuracy']:6.3f} "
                  f"{f['gender_accuracy_above_12']:6.3f} {f.get('ms_per_face', float('nan')):7.3f}")
    if args.conditions:
        print()
        print(format_conditions(conditions))
    if args.json:
        payload = next(iter(results.values())) if len(results) == 1 else results
        if args.conditions:
            payload = {"models": results, "conditions": conditions}
        Path(args.json).write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
