"""Face detectors: name → class registry and a builder from the config.

Every detector returns :class:`stream.types.Faces` with boxes, scores and 5 landmarks
in frame pixels, whatever its network input size.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from models.fetch import ModelError, find_local, model_path
from models.registry import get_spec, names_for_task
from stream.config import DetectorConfig, ModelsConfig, RuntimeConfig, as_kwargs
from stream.types import Faces

logger = logging.getLogger(__name__)

#: What ``detector.name: auto`` tries, in order (``python -m bench.detectors`` measured it): YuNet
#: when a copy is present (MIT; the fastest of the accurate detectors: only MTCNN, far slower, and
#: SCRFD-2.5G, non-commercial, find more faces under 32 px), else RetinaFace-MobileNet0.25, the best
#: detector a fresh machine can get from PyPI without a conversion step.
AUTO_ORDER = ("yunet_dynamic", "yunet", "retinaface")


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
    for candidate in AUTO_ORDER:
        try:
            if find_local(get_spec(candidate), models.local_dirs) is not None:
                return candidate
        except ModelError:
            continue
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
    path = model_path(name, extra_dirs=models.local_dirs, download=models.download)
    session = create_session(path, runtime, name)
    return family(spec, session, **kwargs)
