"""Face detectors: name → class registry and a builder from the config.

Every detector returns :class:`stream.types.Faces` with boxes, scores and 5 landmarks
in frame pixels, whatever its network input size.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Protocol

import numpy as np

from models.fetch import ModelError, find_local, model_path
from models.registry import get_spec, names_for_task
from stream.config import DetectorConfig, ModelsConfig, RuntimeConfig, as_kwargs
from stream.types import Faces

logger = logging.getLogger(__name__)

#: What ``detector.name: auto`` picks, in order (``python -m bench.detectors`` measured them): the
#: dynamic-input YuNet when a copy is present (MIT; no download source but OpenCV Zoo), else the fixed-input
#: YuNet (MIT; also carried in a PyPI wheel, so a fresh machine gets it), else RetinaFace-MobileNet0.25 (MIT,
#: PyPI), used only when YuNet cannot be had (offline with downloads off); the start-up log says so and what
#: it costs.
AUTO_ORDER = ("yunet_dynamic", "yunet", "retinaface")
#: What falling back from YuNet to RetinaFace costs, for the start-up warning (``python -m bench.detectors``).
FALLBACK_COST = "RetinaFace-MobileNet0.25 misses more small faces than YuNet (see `python -m bench.detectors`)"


class Detector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> Faces: ...


def _families() -> dict[str, type]:
    from stream.detectors.blazeface import BlazeFaceDetector
    from stream.detectors.mtcnn import MtcnnDetector
    from stream.detectors.retinaface import RetinaFaceDetector
    from stream.detectors.scrfd import ScrfdDetector
    from stream.detectors.yunet import YuNetDetector

    return {
        "yunet": YuNetDetector,
        "retinaface": RetinaFaceDetector,
        "scrfd": ScrfdDetector,
        "mtcnn": MtcnnDetector,
        "blazeface": BlazeFaceDetector,
    }


def detector_names() -> list[str]:
    """Valid values of ``detector.name`` / ``--detector``."""
    return ["auto", *names_for_task("face_detector")]


def resolve_detector_name(name: str, models: ModelsConfig) -> str:
    """Turn ``auto`` into a concrete registry name; check other names exist.

    Raises:
        ValueError: Unknown detector name (lists the valid ones).
    """
    if name != "auto":
        if name not in detector_names():
            raise ValueError(f"unknown detector {name!r}; valid detectors: {', '.join(detector_names())}")
        return name
    for candidate in AUTO_ORDER[:-1]:
        try:
            if find_local(get_spec(candidate), models.local_dirs) is not None:
                return candidate
        except ModelError:
            logger.warning("detector %s: the local copy is corrupt (checksum mismatch); not using it", candidate)
    if models.download:
        return "yunet"  # fetched when the detector is built
    logger.warning("detector auto: no local YuNet and models.download is off; using %s. %s", AUTO_ORDER[-1],
                   FALLBACK_COST)
    return AUTO_ORDER[-1]


def build_detector(config: DetectorConfig, models: ModelsConfig, runtime: RuntimeConfig) -> Detector:
    """A detector for ``config.name`` (``auto`` resolved), its model fetched and verified.

    Raises:
        ValueError: Unknown detector name.
        ModelError: The model file is missing or corrupt.
    """
    from stream.runtime import create_session

    name = resolve_detector_name(config.name, models)
    spec = get_spec(name)
    families = _families()
    if spec.family not in families:
        raise ValueError(f"detector {name!r} has family {spec.family!r}; supported: {', '.join(families)}")
    kwargs = as_kwargs(config)
    # Not detector arguments: the name picks the class, the interval is the pipeline's schedule.
    kwargs.pop("name")
    kwargs.pop("interval")
    family = families[spec.family]
    if hasattr(family, "from_registry"):
        # Multi-network detectors (MTCNN's cascade) fetch their files and open their sessions themselves.
        detector: Detector = family.from_registry(spec, models, runtime, **kwargs)
        return detector
    try:
        path = model_path(name, extra_dirs=models.local_dirs, download=models.download)
    except ModelError as error:
        if config.name != "auto" or name == AUTO_ORDER[-1]:
            raise
        logger.warning("detector auto: %s cannot be had (%s); falling back to %s. %s", name, error,
                       AUTO_ORDER[-1], FALLBACK_COST)
        return build_detector(replace(config, name=AUTO_ORDER[-1]), models, runtime)
    session = create_session(path, runtime, name)
    return family(spec, session, **kwargs)
