"""Face embeddings: what a face looks like, as a vector that is close for one person and far for two.

The model is declared in the registry (task ``face_embedding``: input size, colour order, normalisation, alignment
template), like the classifiers, and runs on aligned chips cut in the same pass as theirs. The default,
``dlib_face_embedding``, is dlib's CC0 face-recognition ResNet exported to ONNX (``python -m export.dlib_face``):
128-d descriptors whose Euclidean distance is below 0.6 for two faces of one person (dlib's published threshold).
It costs several times a classification (figures: README, ``python -m bench.identity``), so it runs only on the
faces the scheduler chose for classification, never on every face of every frame.
"""

from __future__ import annotations

import numpy as np

from models.registry import MODELS, get_spec
from stream.classify import OnnxClassifier
from stream.config import ModelsConfig, RuntimeConfig

#: Key of the ``(n, d)`` float32 embeddings in :meth:`FaceEmbedder.predict`'s result.
EMBEDDING = "embedding"
#: Words that turn appearance off (``identity.embedding_model``).
NO_MODEL = ("", "none")


class FaceEmbedder(OnnxClassifier):
    """Aligned chips in, ``(n, d)`` float32 embeddings out (the registry's preprocessing, batched inference)."""

    family = "dlib_embedding"

    def decode(self, outputs: list[np.ndarray], empty: bool = False) -> dict[str, np.ndarray]:
        if empty:
            return {EMBEDDING: np.zeros((0, 0), np.float32)}
        return {EMBEDDING: outputs[0].astype(np.float32).reshape(len(outputs[0]), -1)}

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """``(n, S, S, 3)`` uint8 BGR chips aligned with :attr:`template` → ``(n, d)`` float32 embeddings."""
        return self.predict(chips)[EMBEDDING]


def check_embedding_model(name: str) -> None:
    """Check that ``name`` is a registered face-embedding model (or a word turning appearance off).

    Raises:
        ValueError: Unknown model, or a model of another task (the message lists the embedding models).
    """
    if name in NO_MODEL:
        return
    spec = get_spec(name)
    if spec.task != "face_embedding" or spec.family != FaceEmbedder.family:
        valid = sorted(n for n, s in MODELS.items() if s.task == "face_embedding")
        raise ValueError(f"identity.embedding_model {name!r} is a {spec.task} model, not a face embedding; "
                         f"embedding models: {', '.join(valid)} (or none)")


def build_embedder(name: str, models: ModelsConfig, runtime: RuntimeConfig) -> FaceEmbedder | None:
    """The embedding model ``name``, fetched and verified; None when ``name`` turns appearance off.

    Raises:
        ValueError: As :func:`check_embedding_model`.
        ModelError: The file is missing (an export not made yet names its command) or corrupt.
    """
    check_embedding_model(name)
    if name in NO_MODEL:
        return None
    from models.fetch import model_path
    from stream.runtime import create_session

    spec = get_spec(name)
    path = model_path(name, extra_dirs=models.local_dirs, download=models.download)
    return FaceEmbedder(spec, create_session(path, runtime, name))
