"""Age and gender classifiers: aligned chips in, probabilities out.

Each wrapper is built from its registry entry (input size, colour order,
normalisation, alignment template, output decoding) and an onnxruntime session,
and turns its model's raw output into the same named arrays (see
``stream.types``): ``age_group_probs (n, 8)``, ``age (n,)`` years, ``p_female (n,)``.
A model provides the subset it knows; the pipeline merges them.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np
import onnxruntime as ort

from models.registry import MODELS, ModelSpec, get_spec
from stream.config import ClassifierConfig, ModelsConfig, RuntimeConfig
from stream.types import AGE_GROUP_LOWER, AGE_GROUP_PROBS, AGE_GROUPS, AGE_YEARS, P_FEMALE, age_group_index

logger = logging.getLogger(__name__)

# Representative age of each group, for models that only give group probabilities.
GROUP_MIDPOINTS = np.array([6.0, 16.0, 25.5, 35.5, 48.0, 60.5, 73.0, 85.0], np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _ensure_probabilities(values: np.ndarray) -> np.ndarray:
    """Rows that already sum to 1 are kept; anything else is treated as logits."""
    sums = values.sum(axis=1)
    if values.min() >= 0 and np.allclose(sums, 1.0, atol=1e-3):
        return values
    return _softmax(values)


class OnnxClassifier:
    """Base wrapper: preprocessing from the registry, batched inference, family-specific decoding."""

    family: ClassVar[str] = ""

    def __init__(self, spec: ModelSpec, session: ort.InferenceSession, *,
                 max_batch_size: int = ClassifierConfig.max_batch_size) -> None:
        if spec.input_size is None:
            raise ValueError(f"classifier {spec.name!r} must declare a fixed input_size in the registry")
        if spec.input_size[0] != spec.input_size[1]:
            raise ValueError(f"classifier {spec.name!r} must take square chips, got {spec.input_size}")
        self.spec = spec
        self.name = spec.name
        self.session = session
        self.chip_size = spec.input_size[0]
        self.template = spec.alignment
        self.max_batch_size = max_batch_size
        self.input_name = session.get_inputs()[0].name
        self.output_names = [o.name for o in session.get_outputs()]
        self._mean = np.asarray(spec.mean, np.float32)
        self._inv_std = (1.0 / np.asarray(spec.std, np.float64)).astype(np.float32)

    def preprocess(self, chips: np.ndarray) -> np.ndarray:
        """``(n, S, S, 3)`` uint8 BGR chips → ``(n, 3, S, S)`` float32 network input."""
        # Reorder while still uint8 (a quarter of the bytes), then normalise in place: ~7x faster than
        # converting first (0.03 vs 0.23 ms a face at 136x136), the same values.
        planes = chips.transpose(0, 3, 1, 2)
        planes = planes[:, ::-1] if self.spec.color == "RGB" else planes
        values = np.ascontiguousarray(planes).astype(np.float32)
        values -= self._mean.reshape(1, -1, 1, 1)
        values *= self._inv_std.reshape(1, -1, 1, 1)
        return values

    def predict(self, chips: np.ndarray) -> dict[str, np.ndarray]:
        """Named estimates for each chip.

        Args:
            chips: ``(n, S, S, 3)`` uint8 BGR chips aligned with :attr:`template`, ``S`` = :attr:`chip_size`.

        Returns:
            Arrays with ``n`` rows keyed by ``stream.types`` names; empty arrays when ``n == 0``.
        """
        if chips.ndim != 4 or chips.shape[1:] != (self.chip_size, self.chip_size, 3):
            side = self.chip_size
            raise ValueError(f"{self.name}: chips must be (n, {side}, {side}, 3), got {chips.shape}")
        if len(chips) == 0:
            return self.decode([np.zeros((0, 1), np.float32) for _ in self.output_names], empty=True)
        outputs: list[list[np.ndarray]] = []
        for start in range(0, len(chips), self.max_batch_size):
            batch = self.preprocess(chips[start : start + self.max_batch_size])
            outputs.append(self.session.run(self.output_names, {self.input_name: batch}))
        merged = [np.concatenate([o[i] for o in outputs]) for i in range(len(self.output_names))]
        return self.decode(merged)

    def decode(self, outputs: list[np.ndarray], empty: bool = False) -> dict[str, np.ndarray]:
        raise NotImplementedError


class CydralAgeClassifier(OnnxClassifier):
    """81 age bins (0..80 years, softmax inside) → age group probabilities and expected years."""

    family = "cydral_age"
    # dlib's age predictor weights bin 0 as a quarter year (babies), then 1..80.
    BIN_AGES = np.concatenate([[0.25], np.arange(1, 81)]).astype(np.float32)
    # (81, 8) 0/1 matrix summing bins into groups; bin 80 lands in 66-80, so "80+" is never said.
    BIN_TO_GROUP = np.eye(len(AGE_GROUPS), dtype=np.float32)[age_group_index(np.arange(81))]

    def decode(self, outputs: list[np.ndarray], empty: bool = False) -> dict[str, np.ndarray]:
        if empty:
            return {AGE_GROUP_PROBS: np.zeros((0, 8), np.float32), AGE_YEARS: np.zeros(0, np.float32)}
        probs = _ensure_probabilities(outputs[0].astype(np.float32))
        return {AGE_GROUP_PROBS: probs @ self.BIN_TO_GROUP, AGE_YEARS: probs @ self.BIN_AGES}


class CydralGenderClassifier(OnnxClassifier):
    """Two classes ``[female, male]``."""

    family = "cydral_gender"

    def decode(self, outputs: list[np.ndarray], empty: bool = False) -> dict[str, np.ndarray]:
        if empty:
            return {P_FEMALE: np.zeros(0, np.float32)}
        probs = _ensure_probabilities(outputs[0].astype(np.float32))
        return {P_FEMALE: probs[:, 0]}


class AgeGroupClassifier(OnnxClassifier):
    """Eight age-group probabilities in :data:`AGE_GROUPS` order (e.g. the seed SigLIP model).

    Years are the probability-weighted group midpoints: coarse, and documented as such.
    """

    family = "age_group8"

    def decode(self, outputs: list[np.ndarray], empty: bool = False) -> dict[str, np.ndarray]:
        if empty:
            return {AGE_GROUP_PROBS: np.zeros((0, 8), np.float32), AGE_YEARS: np.zeros(0, np.float32)}
        probs = _ensure_probabilities(outputs[0].astype(np.float32))
        return {AGE_GROUP_PROBS: probs, AGE_YEARS: probs @ GROUP_MIDPOINTS}


class MultiHeadClassifier(OnnxClassifier):
    """The project's own network: outputs ``group_logits (n,8)``, ``age (n,)`` years, ``gender_logit (n,)``."""

    family = "multihead"

    def decode(self, outputs: list[np.ndarray], empty: bool = False) -> dict[str, np.ndarray]:
        if empty:
            return {
                AGE_GROUP_PROBS: np.zeros((0, 8), np.float32),
                AGE_YEARS: np.zeros(0, np.float32),
                P_FEMALE: np.zeros(0, np.float32),
            }
        named = dict(zip(self.output_names, outputs))
        probs = _softmax(named["group_logits"].astype(np.float32))
        age = named["age"].astype(np.float32).reshape(-1)
        p_female = 1.0 / (1.0 + np.exp(-named["gender_logit"].astype(np.float32).reshape(-1)))
        return {AGE_GROUP_PROBS: probs, AGE_YEARS: np.clip(age, 0, 100), P_FEMALE: p_female}


FAMILIES: dict[str, type[OnnxClassifier]] = {
    cls.family: cls for cls in (CydralAgeClassifier, CydralGenderClassifier, AgeGroupClassifier, MultiHeadClassifier)
}


def classifier_model_names(config: ClassifierConfig) -> list[str]:
    """Distinct model names a classifier section asks for ("" or "none" drops a model)."""
    names = []
    for name in (config.age_model, config.gender_model):
        if name and name != "none" and name not in names:
            names.append(name)
    return names


def check_classifier_models(config: ClassifierConfig) -> None:
    """Check that every model the section names is a registered classifier (before anything loads).

    Raises:
        ValueError: Unknown model name, or a model that is not a classifier.
    """
    for name in classifier_model_names(config):
        spec = get_spec(name)
        if spec.family not in FAMILIES:
            valid = sorted(n for n, s in MODELS.items() if s.family in FAMILIES)
            raise ValueError(f"model {name!r} is a {spec.task} model, not a classifier; classifiers: "
                             f"{', '.join(valid)}")


def build_classifiers(
    config: ClassifierConfig, models: ModelsConfig, runtime: RuntimeConfig
) -> list[OnnxClassifier]:
    """Classifier wrappers for the models the config names, fetched and verified.

    Raises:
        ValueError: Unknown model name, or a model that is not a classifier.
        ModelError: The model file is missing or corrupt.
    """
    from models.fetch import model_path
    from stream.runtime import create_session

    check_classifier_models(config)
    built = []
    for name in classifier_model_names(config):
        spec = get_spec(name)
        path = model_path(name, extra_dirs=models.local_dirs, download=models.download)
        session = create_session(path, runtime, name)
        built.append(FAMILIES[spec.family](spec, session, max_batch_size=config.max_batch_size))
    return built


__all__ = ["AGE_GROUP_LOWER", "FAMILIES", "OnnxClassifier", "build_classifiers", "check_classifier_models",
           "classifier_model_names"]
