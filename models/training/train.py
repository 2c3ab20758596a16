"""``python -m models.training.train``: train the multi-head age/gender network on UTKFace, export it, write its card.

One command re-trains from scratch (seeded, deterministic split and chips)::

    python -m models.training.train --data ../shared/data/utkface/UTKFace

Steps: list the labelled images; split them (``models.training.data``: seed 0, 10% validation, stratified by age group
and gender); detect and align every image once through the product's path and cache the chips as ``.npy``
outside the repo (``--cache``); fine-tune the whole :class:`models.training.nets.MultiHeadNet` (Cydral age trunk at
``--age-trunk-lr-scale`` x the learning rate, Cydral gender trunk at ``--backbone-lr-scale`` x, new heads at 1x)
with batch-level augmentation feeding both trunks (flip, small affine jitter, colour jitter, blur/downscale like
video); ``--freeze-age-trunk`` keeps the age trunk fixed and caches its features instead. Denormal floats are
flushed (``torch.set_flush_denormal``; the Cydral files hold thousands, zeroed on load), without which the x86
slow path made an epoch ~15 minutes instead of ~1.5. Checkpoint every epoch (``--resume`` continues); export
``models/weights/utk_multihead.onnx`` with a parity check; evaluate it and the default pair on the validation
split through ``models.training.evaluate``; write ``models/weights/utk_multihead.md``.

Backbones (``--backbone``): ``cydral`` (the default) fine-tunes the Cydral age trunk on 64x64 ``dlib_chip`` chips
with the Cydral gender trunk beside it; ``dlib`` fine-tunes dlib's face-recognition ResNet
(``models.training.dlib_resnet``, CC0, from the face_recognition_models package) as the only trunk on 112x112
``dlib_chip_025`` chips (``--size 112``): the committed model, whose card gives its one re-training command.

Loss: class-weighted cross-entropy over the 8 groups (weights ~ frequency^-p, ``--class-weight-power``) with label
smoothing, DLDL (KL to a Gaussian over the 101 age bins) plus L1 on the expected age, and BCE for gender.

Distillation (``--teachers K``): K members of the same recipe (other seeds, same split) are trained first, then
the exported net learns from the labels and from the members' averaged predictions on each augmented batch
(``--kd-weight``); ``--descriptor-teacher W`` blends in a second, different teacher: heads on dlib's frozen
face descriptor, cross-fitted per image (``models.training.descriptor_teacher``). ``--member k`` trains one
member alone, so members can run as parallel processes on one GPU; the run without it finds them finished and
goes on to the student. On a GPU machine that does not hold the images, ``--no-card`` keeps the export's
training record beside it, and ``--card-only`` evaluates that export and writes its card where the images are.

Export settings: ``--flip-tta`` (mirror-image averaging in the graph), ``--ensemble-size S`` (the net averaged
with heads on dlib's frozen descriptor of the S x S chip, ``models.training.descriptor_teacher.DescriptorEnsemble``) and
``--int8`` (``export/int8.py``, checked against the float graph). ``--from-weights OLD.onnx`` skips training:
it reads the trained weights back from an earlier float export (and its ``.train.json``) and exports them with
this command's settings, so a model trained on a GPU can be re-exported on a CPU machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F  # noqa: N812

from models.training.data import DEFAULT_SEED, DEFAULT_VAL_FRACTION, build_chip_cache, list_samples, split_indices
from models.training.descriptor_teacher import FOLDS, descriptor_targets
from models.training.dlib_resnet import fold_affine
from models.training.nets import (
    MEAN_RGB,
    STD_RGB,
    FlipAverage,
    MultiHeadNet,
    age_targets,
    build_multihead_from_cydral,
    build_multihead_from_dlib,
    to_input,
    zero_denormals_,
)
from stream.types import AGE_GROUPS, age_group_index

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
MODEL_NAME = "utk_multihead"
OUTPUT_NAMES = ("group_logits", "age", "gender_logit")
#: Alignment template of each backbone's chips (the padding its pretrained weights saw).
TEMPLATES = {"cydral": "dlib_chip", "dlib": "dlib_chip_025"}


#: Settings a resumed run may change: the epoch count (to extend a run) and inference-time settings.
_RESUME_MAY_CHANGE = ("epochs", "group_mix", "out_dir", "run_dir", "fp16", "flip_tta", "int8",
                      "ensemble_size")
#: An int8 export must agree with its float graph on held-out chips at least this well (top-1 group, gender
#: decision) and move the age estimate by at most this many years on average.
INT8_MIN_GROUP_AGREEMENT = 0.95
INT8_MIN_GENDER_AGREEMENT = 0.98
INT8_MAX_MEAN_YEARS = 0.5
#: Training chips that calibrate an int8 export, and as many others that check it.
INT8_CALIBRATION_CHIPS = 512


@dataclass
class TrainConfig:
    """Every knob of a run (stored in each checkpoint and in the card)."""

    data: str = str(REPO.parent / "shared" / "data" / "utkface" / "UTKFace")
    cache: str = "/tmp/face-stream-train/utkface"
    run_dir: str = "/tmp/face-stream-train/run"
    out_dir: str = str(REPO / "models" / "weights")
    #: "cydral": the Cydral age trunk + gender trunk (64x64 chips, ``dlib_chip``); "dlib": dlib's face-recognition
    #: ResNet as the one trunk (112x112 chips, ``dlib_chip_025``; ``models.training.dlib_resnet``).
    backbone: str = "cydral"
    size: int = 64
    epochs: int = 8
    batch_size: int = 128
    lr: float = 1e-3
    backbone_lr_scale: float = 0.3
    age_trunk_lr_scale: float = 0.2
    freeze_age_trunk: bool = False
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    #: Group weights in the cross-entropy ~ frequency^-power: 0.5 lifts rare groups (80+) a little, 0 is plain.
    class_weight_power: float = 0.5
    age_sigma: float = 2.0
    l1_weight: float = 0.1
    gender_weight: float = 1.0
    seed: int = DEFAULT_SEED
    val_fraction: float = DEFAULT_VAL_FRACTION
    limit: int = 0
    threads: int = 0
    fp16: bool = False
    group_mix: float = 0.0
    #: Export with horizontal-flip test-time augmentation baked in (``models.training.nets.FlipAverage``; 2x the cost).
    flip_tta: bool = False
    #: Export int8 (static QDQ quantization, ``export.int8``; calibrated on 512 training chips, checked against the
    #: float graph on 512 others): under half the per-face CPU cost on x86 CPUs with VNNI. Overrides ``fp16``'s
    #: float16 weight storage.
    int8: bool = False
    #: Export the net averaged with heads on dlib's frozen face-recognition descriptor read at this chip side
    #: (``models.training.descriptor_teacher.DescriptorEnsemble``; the graph then takes chips of this side and
    #: resizes them for the net; dlib backbone only). 0: the net alone.
    ensemble_size: int = 0
    #: Decay of an exponential moving average of the weights, updated every step; validation, checkpoints'
    #: figures and the export use the average (0: the raw weights). Averaging over the last few hundred steps
    #: smooths the noise of UTKFace's estimated labels out of the final weights.
    ema: float = 0.0
    #: Knowledge distillation: first train this many members of the same recipe (other seeds for the initial
    #: heads, the shuffle and the augmentation; the same split), then the exported net with the members'
    #: averaged predictions on each augmented batch as soft targets besides the labels. 0: one net, no members.
    teachers: int = 0
    #: Weight of the distillation terms (KL to the members' group probabilities and age distributions, BCE to
    #: their mean P(female)).
    kd_weight: float = 1.0
    #: Train member ``k`` (1..teachers) of the recipe and nothing else (to train members in parallel processes;
    #: the run without ``--member`` then finds them done). 0: the whole recipe.
    member: int = 0
    #: Weight of the dlib face-descriptor teacher (``models.training.descriptor_teacher``) in the soft targets: they
    #: become (1 - w) x the members' average + w x its cross-fitted per-image outputs (w alone without members).
    #: 0: members only.
    descriptor_teacher: float = 0.0
    #: Share of training chips degraded, before the batch augmentation, by one random camera condition of
    #: ``models.training.conditions`` (small face, motion/defocus blur, JPEG, dim light with noise, covered lower
    #: face, turned head, or all at once): the conditions ``python -m models.training.evaluate --conditions``
    #: scores. Drawn per (seed, epoch, step), so a resumed run repeats them. 0: off (the committed model).
    camera_augment: float = 0.0


# ----------------------------------------------------------------------------------------------- tensors


def augment(chips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Batch augmentation on ``(n, S, S, 3)`` uint8 BGR chips → augmented float32 ``(n, 3, S, S)`` input.

    Horizontal flip (p 0.5); affine jitter (rotation +-8 degrees, scale 0.92-1.08, shift +-4%); brightness,
    contrast and saturation jitter; for a third of the faces a down-and-up resize to 40-80% (small, soft faces
    as in video).
    """
    n, size, device = chips.shape[0], chips.shape[1], chips.device
    x = chips.flip(-1).permute(0, 3, 1, 2).float() / 255.0  # RGB 0..1

    # Random draws come from the CPU generator whatever the chips' device, so a run's augmentation is the
    # same sequence on CPU and GPU (and a resumed run continues it).
    def uniform(low: float, high: float, shape: tuple[int, ...] = ()) -> torch.Tensor:
        return (low + (high - low) * torch.rand((n, *shape), generator=generator)).to(device)

    flip = (torch.rand(n, generator=generator) < 0.5).to(device)
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
    angle = uniform(-8, 8) * math.pi / 180
    scale = uniform(0.92, 1.08)
    shift = uniform(-0.04, 0.04, (2,)) * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    low = (torch.rand(n, generator=generator) < 0.33).to(device)
    if low.any():
        factor = float(uniform(0.4, 0.8)[0])
        small = max(8, round(size * factor))
        soft = F.interpolate(F.interpolate(x[low], size=(small, small), mode="area"), size=(size, size),
                             mode="bilinear", align_corners=False)
        x = x.clone()
        x[low] = soft
    gray = x.mean(dim=1, keepdim=True)
    x = gray + (x - gray) * uniform(0.7, 1.3).view(n, 1, 1, 1)  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = mean + (x - mean) * uniform(0.75, 1.25).view(n, 1, 1, 1)  # contrast
    x = x + uniform(-0.1, 0.1).view(n, 1, 1, 1)  # brightness
    x = x.clamp(0, 1) * 255.0
    mean_t = torch.tensor(MEAN_RGB, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return (x - mean_t) / STD_RGB[0]


def camera_augmented(chips: torch.Tensor, config: TrainConfig, epoch: int, step: int) -> torch.Tensor:
    """``(n, S, S, 3)`` uint8 chips with ``config.camera_augment`` of them degraded by a camera condition
    (``models.training.conditions.augment_chips``, on the CPU: JPEG and noise are OpenCV/numpy work)."""
    if config.camera_augment <= 0:
        return chips
    from models.training.conditions import augment_chips

    rng = np.random.default_rng([config.seed, epoch, step])
    degraded = augment_chips(chips.cpu().numpy(), config.camera_augment, rng)
    return torch.from_numpy(degraded).to(chips.device)


def class_weights(groups: np.ndarray, power: float = 0.5) -> torch.Tensor:
    """``(8,)`` float32 weights ~ frequency^-power (0.5: 1/sqrt), mean 1 over the training samples."""
    counts = np.bincount(groups, minlength=len(AGE_GROUPS)).astype(np.float64)
    weights = np.maximum(counts, 1) ** -power
    weights *= len(groups) / (weights[groups].sum())
    return torch.tensor(weights, dtype=torch.float32)


def loss_terms(out: dict[str, torch.Tensor], age: torch.Tensor, group: torch.Tensor, gender: torch.Tensor,
               weights: torch.Tensor, config: TrainConfig,
               soft: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Loss parts for one batch; ``total`` is what is minimised.

    ``soft``: the members' averaged predictions for the same batch (:func:`member_targets`), which add the
    distillation terms ``kd_group``, ``kd_age`` and ``kd_gender`` at ``config.kd_weight``.
    """
    ce = F.cross_entropy(out["group_logits"], group, weight=weights, label_smoothing=config.label_smoothing)
    kl = F.kl_div(F.log_softmax(out["age_logits"], dim=1), age_targets(age, config.age_sigma), reduction="batchmean")
    l1 = F.l1_loss(out["age"], age.float())
    bce = F.binary_cross_entropy_with_logits(out["gender_logit"], gender.float())
    total = ce + kl + config.l1_weight * l1 + config.gender_weight * bce
    terms = {"ce": ce, "kl": kl, "l1": l1, "bce": bce}
    if soft is not None:
        terms["kd_group"] = F.kl_div(F.log_softmax(out["group_logits"], dim=1), soft["group_probs"],
                                     reduction="batchmean")
        terms["kd_age"] = F.kl_div(F.log_softmax(out["age_logits"], dim=1), soft["age_probs"], reduction="batchmean")
        terms["kd_gender"] = F.binary_cross_entropy_with_logits(out["gender_logit"], soft["p_female"])
        total = total + config.kd_weight * (terms["kd_group"] + terms["kd_age"] + config.gender_weight
                                            * terms["kd_gender"])
    return {"total": total, **terms}


@torch.no_grad()
def member_targets(members: list[MultiHeadNet], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The members' mean group probabilities ``(n, 8)``, age distributions ``(n, 101)`` and P(female) ``(n,)``.

    Averaging probabilities (not logits) is the ensemble the soft targets stand for; each member sees the same
    augmented batch as the student, so the targets follow the augmentation.
    """
    sums: dict[str, torch.Tensor] = {}
    for member in members:
        out = member.forward_train(x)
        for key, value in (("group_probs", torch.softmax(out["group_logits"].float(), 1)),
                           ("age_probs", torch.softmax(out["age_logits"].float(), 1)),
                           ("p_female", torch.sigmoid(out["gender_logit"].float()))):
            sums[key] = sums[key] + value if key in sums else value
    return {k: v / len(members) for k, v in sums.items()}


def blend_targets(members: dict[str, torch.Tensor] | None, teacher: dict[str, torch.Tensor],
                  weight: float) -> dict[str, torch.Tensor]:
    """``(1 - weight)`` x the members' targets + ``weight`` x the descriptor teacher's (its alone without members)."""
    if members is None:
        return teacher
    return {k: (1.0 - weight) * members[k] + weight * teacher[k] for k in members}


# ----------------------------------------------------------------------------------------------- loop


class WeightAverage:
    """Exponential moving average of a model's floating-point parameters and buffers (copies on its device)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for key, value in model.state_dict().items():
            if key in self.shadow:
                self.shadow[key].lerp_(value.detach(), 1.0 - self.decay)

    def averaged(self, model: torch.nn.Module) -> MultiHeadNet:
        """A copy of ``model`` holding the averaged weights (on ``model``'s device)."""
        import copy

        out = copy.deepcopy(model)
        device = next(model.parameters()).device
        out.load_state_dict({k: v.to(device) for k, v in self.shadow.items()}, strict=False)
        return out  # type: ignore[return-value]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow = {k: v.clone() for k, v in state.items()}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def age_trunk_features(cydral_age_path: str | Path, chips: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """``(n, 256)`` float32 features of the frozen Cydral age trunk for ``(n, S, S, 3)`` uint8 BGR chips.

    Runs the original ONNX graph in onnxruntime with the feature node added as an output (about twice as fast
    as torch on CPU); ``models.training.nets.OnnxGraphModule`` gives the same features (checked in the tests).
    """
    import onnx
    import onnxruntime as ort

    from models.training.nets import CYDRAL_FEATURE_NODE

    proto = onnx.load(str(cydral_age_path))
    proto.graph.output.append(onnx.helper.make_tensor_value_info(CYDRAL_FEATURE_NODE, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    features = np.zeros((len(chips), 256), np.float32)
    for start in range(0, len(chips), batch_size):
        x = to_input(torch.from_numpy(np.ascontiguousarray(chips[start : start + batch_size]))).numpy()
        features[start : start + len(x)] = session.run([CYDRAL_FEATURE_NODE], {session.get_inputs()[0].name: x})[0]
    return features


def cached_age_features(cydral_age_path: str | Path, chips: np.ndarray, names: np.ndarray, cache: str | Path,
                        size: int) -> np.ndarray:
    """:func:`age_trunk_features`, kept as ``features_cydral_age_{size}.npy`` (+ names) in the chip cache."""
    folder = Path(cache)
    path, names_path = folder / f"features_cydral_age_{size}.npy", folder / f"features_cydral_age_{size}_names.npy"
    if path.is_file() and names_path.is_file() and np.array_equal(np.load(names_path), names):
        return np.load(path)
    features = age_trunk_features(cydral_age_path, chips)
    np.save(path, features)
    np.save(names_path, names)
    return features


def predict_chips(model: MultiHeadNet, chips: np.ndarray, features: np.ndarray | None = None,
                  batch_size: int = 256) -> dict[str, np.ndarray]:
    """Eval-mode outputs for ``(n, S, S, 3)`` uint8 BGR chips: ``group_probs (n,8)``, ``age (n,)``, ``p_female``.

    Args:
        model: The network.
        chips: Aligned chips.
        features: Optional cached ``(n, 256)`` age-trunk features of the same chips.
        batch_size: Chips per forward pass.
    """
    model.eval()
    device = next(model.parameters()).device
    parts: dict[str, list[np.ndarray]] = {"group_probs": [], "age": [], "p_female": []}
    with torch.no_grad():
        for start in range(0, len(chips), batch_size):
            x = to_input(torch.from_numpy(chips[start : start + batch_size]).to(device))
            feats = (None if features is None
                     else torch.from_numpy(features[start : start + batch_size]).to(device))
            out = model.forward_train(x, age_features=feats)
            parts["group_probs"].append(torch.softmax(out["group_logits"], 1).cpu().numpy())
            parts["age"].append(out["age"].cpu().numpy())
            parts["p_female"].append(torch.sigmoid(out["gender_logit"]).cpu().numpy())
    if not len(chips):
        return {"group_probs": np.zeros((0, len(AGE_GROUPS)), np.float32), "age": np.zeros(0, np.float32),
                "p_female": np.zeros(0, np.float32)}
    return {k: np.concatenate(v) for k, v in parts.items()}


def quick_val(model: MultiHeadNet, chips: np.ndarray, features: np.ndarray | None, age: np.ndarray,
              gender: np.ndarray) -> dict[str, float]:
    """Validation figures on cached chips (the full runtime-path evaluation runs after export)."""
    from models.training.metrics import classification_report, confusion_matrix

    if not len(chips):
        return dict.fromkeys(("mae", "group_accuracy", "macro_f1", "f1_80plus", "gender_accuracy"), float("nan"))
    pred = predict_chips(model, chips, features)
    matrix = confusion_matrix(age_group_index(age), pred["group_probs"].argmax(1), len(AGE_GROUPS))
    report = classification_report(matrix)
    return {
        "mae": float(np.abs(pred["age"] - age).mean()),
        "group_accuracy": float(report["accuracy"]),
        "macro_f1": float(report["macro_f1"]),
        "f1_80plus": float(np.asarray(report["f1"])[-1]),
        "gender_accuracy": float(((pred["p_female"] >= 0.5) == gender).mean()),
    }


def _progress(epoch: int, epochs: int, step: int, steps: int, started: float, loss: float) -> None:
    elapsed = time.time() - started
    eta = elapsed / max(step, 1) * (steps - step)
    bar = "#" * int(30 * step / steps)
    sys.stderr.write(f"\repoch {epoch + 1}/{epochs} [{bar:<30}] {step}/{steps} loss {loss:.3f} "
                     f"{elapsed:5.0f}s eta {eta:4.0f}s")
    sys.stderr.flush()


def member_config(config: TrainConfig, k: int) -> TrainConfig:
    """Settings of member ``k`` of ``config``'s recipe: its own seed offset and run folder, the rest shared.

    A member learns from the labels alone, so the distillation settings are cleared: the same members serve
    any ``kd_weight``.
    """
    return replace(config, member=k, run_dir=str(Path(config.run_dir) / f"member{k}"), teachers=0,
                   kd_weight=TrainConfig.kd_weight, descriptor_teacher=TrainConfig.descriptor_teacher)


def build_model(config: TrainConfig) -> MultiHeadNet:
    """The untrained net of ``config``'s backbone, from the pretrained files (fetched if needed).

    Raises:
        ValueError: Unknown backbone, or settings the backbone cannot take.
    """
    from models.fetch import model_path

    if config.backbone == "cydral":
        return build_multihead_from_cydral(model_path("cydral_age"), model_path("cydral_gender"),
                                           freeze_age_trunk=config.freeze_age_trunk)
    if config.backbone == "dlib":
        if config.freeze_age_trunk or config.size < 112:
            raise ValueError("backbone dlib: needs --size 112 or more and a trainable trunk (no --freeze-age-trunk)")
        return build_multihead_from_dlib(model_path("dlib_face_recognition"))
    raise ValueError(f"unknown backbone {config.backbone!r}; valid: {', '.join(TEMPLATES)}")


def train(config: TrainConfig, resume: bool = False) -> tuple[MultiHeadNet, dict[str, object]]:
    """Run (or continue) training; returns the model and a summary (split, history, timing).

    With ``config.teachers`` = K, members 1..K are trained first (each resumed from, or taken from, its own
    checkpoint under ``<run_dir>/member<k>``), then the returned net learns from the labels and from them.
    With ``config.member`` = k, only member k is trained and returned.

    Denormal floats are flushed to zero while it runs: the Cydral weights hold thousands (zeroed on load,
    ``models.training.nets``) and training can create more in activations and gradients; x86 runs those through a
    microcode slow path, several times slower. The flag is process-wide (it also makes value comparisons treat
    denormals as zero), so it is switched off again on return.

    Raises:
        ValueError: ``resume`` without a checkpoint, or a checkpoint made with a different config.
    """
    torch.set_flush_denormal(True)
    try:
        if config.member:
            member = member_config(config, config.member)
            return _train(member, resume or (Path(member.run_dir) / "last.pt").is_file())
        members, member_summaries = [], []
        for k in range(1, config.teachers + 1):
            member = member_config(config, k)
            # A finished member's checkpoint is resumed with nothing left to do: its weights come back as they are.
            net, summary = _train(member, (Path(member.run_dir) / "last.pt").is_file())
            members.append(net)
            member_summaries.append(summary["history"][-1])  # type: ignore[index]
        model, summary = _train(config, resume, members)
        if members:
            summary["members"] = member_summaries
        return model, summary
    finally:
        torch.set_flush_denormal(False)


def _train(config: TrainConfig, resume: bool,
           members: list[MultiHeadNet] | None = None) -> tuple[MultiHeadNet, dict[str, object]]:
    from models.fetch import model_path

    # Members differ from the main run (and each other) in everything random except the split.
    run_seed = config.seed + 1000 * config.member
    seed_everything(run_seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    samples = list_samples(config.data, config.limit)
    train_idx, val_idx = split_indices(samples, config.seed, config.val_fraction)
    cfg = _stream_config()
    cache = build_chip_cache(samples, config.cache, lambda: _detector(cfg), TEMPLATES[config.backbone],
                             (config.size,))
    chips = cache[f"chips{config.size}"]
    names = np.asarray([Path(p).name for p in samples.paths])
    # A frozen age trunk's features are computed once (cached); a fine-tuned one runs on the augmented chips.
    features = (cached_age_features(model_path("cydral_age"), chips, names, config.cache, config.size)
                if config.freeze_age_trunk else None)
    groups = samples.group
    weights = class_weights(groups[train_idx], config.class_weight_power).to(device)

    model = build_model(config).to(device)
    head_params = [p for n, p in model.named_parameters()
                   if p.requires_grad and not n.startswith(("gender_trunk.", "age_trunk."))]
    groups_params = [{"params": head_params, "lr": config.lr}]
    if model.gender_trunk is not None:
        groups_params.append({"params": list(model.gender_trunk.parameters()),
                              "lr": config.lr * config.backbone_lr_scale})
    if not config.freeze_age_trunk:
        groups_params.append({"params": list(model.age_trunk.parameters()),
                              "lr": config.lr * config.age_trunk_lr_scale})
    optimizer = torch.optim.AdamW(groups_params, weight_decay=config.weight_decay)
    average = WeightAverage(model, config.ema) if config.ema > 0 else None
    steps_per_epoch = max(1, len(train_idx) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = min(100, total_steps // 10)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = run_dir / "last.pt"
    start_epoch, history, train_seconds = 0, [], 0.0
    generator = torch.Generator().manual_seed(run_seed)
    if resume:
        if not checkpoint.is_file():
            raise ValueError(f"resume: no checkpoint at {checkpoint}")
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        # Only the number of epochs may change on resume (to extend a run); anything else would mix two runs.
        # (A key the checkpoint predates counts as its default.)
        defaults = asdict(TrainConfig())
        changed = sorted(k for k, v in asdict(config).items()
                         if k not in _RESUME_MAY_CHANGE and state["config"].get(k, defaults[k]) != v)
        if changed:
            raise ValueError(f"resume: checkpoint {checkpoint} was made with different settings: {changed}")
        model.load_state_dict(state["model"])
        if average is not None:
            average.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"].cpu())  # RNG states are CPU tensors whatever map_location did
        torch.set_rng_state(state["torch_rng"].cpu())
        start_epoch, history, train_seconds = state["epoch"], state["history"], state["train_seconds"]
        logger.info("resumed from %s at epoch %d", checkpoint, start_epoch)

    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    # Everything a step indexes lives on the training device (on a GPU, augmentation runs there too).
    chips_t = torch.from_numpy(chips).to(device)
    features_t = None if features is None else torch.from_numpy(features).to(device)
    age_t = torch.from_numpy(samples.age).to(device)
    group_t = torch.from_numpy(groups).to(device)
    gender_t = torch.from_numpy(samples.gender).to(device)
    members = [m.to(device).eval() for m in members or []]
    for m in members:
        m.group_mix = 0.0  # targets from the group head itself, like the student's own group logits
    teacher = None
    if config.descriptor_teacher > 0:
        stored = descriptor_targets(samples, config.cache, train_idx, val_idx, config.seed, cache["landmarks"])
        teacher = {k: torch.from_numpy(v).float().to(device) for k, v in stored.items()}
    for epoch in range(start_epoch, config.epochs):
        model.train()
        started = time.time()
        order = torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=generator)]
        sums: dict[str, torch.Tensor] = {}  # on the device: read back only for the progress bar
        for step in range(steps_per_epoch):
            batch = order[step * config.batch_size : (step + 1) * config.batch_size].to(device)
            x = augment(camera_augmented(chips_t[batch], config, epoch, step),
                        generator).contiguous(memory_format=torch.channels_last)
            feats = None if features_t is None else features_t[batch]
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                out = model.forward_train(x, age_features=feats)
                soft = member_targets(members, x) if members else None
            if teacher is not None:
                soft = blend_targets(soft, {k: v[batch] for k, v in teacher.items()}, config.descriptor_teacher)
            out = {k: v.float() for k, v in out.items()}
            terms = loss_terms(out, age_t[batch], group_t[batch], gender_t[batch], weights, config, soft)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(terms["total"]).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if average is not None:
                average.update(model)
            for key, value in terms.items():
                sums[key] = sums[key] + value.detach() if key in sums else value.detach()
            if step % 5 == 0 or step == steps_per_epoch - 1:
                _progress(epoch, config.epochs, step + 1, steps_per_epoch, started,
                          float(sums["total"]) / (step + 1))
        sys.stderr.write("\n")
        train_seconds += time.time() - started
        evaluated = average.averaged(model) if average is not None else model
        val = quick_val(evaluated, chips[val_idx], None if features is None else features[val_idx],
                        samples.age[val_idx], samples.gender[val_idx])
        entry = {"epoch": epoch + 1, "seconds": round(time.time() - started, 1),
                 **{f"loss_{k}": round(float(v) / steps_per_epoch, 4) for k, v in sums.items()},
                 **{f"val_{k}": round(v, 4) for k, v in val.items()}}
        history.append(entry)
        logger.info("epoch %s", json.dumps(entry))
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "epoch": epoch + 1,
                 "history": history, "train_seconds": train_seconds, "config": asdict(config),
                 "ema": average.state_dict() if average is not None else None}
        torch.save(state, run_dir / "last.part")
        (run_dir / "last.part").replace(checkpoint)
    model = average.averaged(model.cpu()) if average is not None else model
    model.cpu().eval()
    model.group_mix = config.group_mix
    summary = {"n_train": len(train_idx), "n_val": len(val_idx), "history": history,
               "train_seconds": round(train_seconds, 1), "device": device.type,
               "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
               "images_per_second": round(len(history) * steps_per_epoch * config.batch_size
                                          / max(train_seconds, 1e-9), 1),
               "detector_misses_all": int((~cache["detected"]).sum()), "threads": torch.get_num_threads()}
    return model, summary


def _stream_config() -> object:
    from stream.config import load_config

    return load_config()


def _detector(config: object) -> object:
    from stream.detectors import build_detector

    return build_detector(config.detector, config.models, config.runtime)  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------------- export + card


def export(model: MultiHeadNet, config: TrainConfig) -> tuple[Path, str, float, dict[str, float] | None]:
    """Write ``<out_dir>/utk_multihead.onnx`` after the parity check.

    Returns:
        Path, sha256, the float graph's parity difference, and for ``config.int8`` the int8 check
        (:func:`int8_agreement`), else None.

    Raises:
        ParityError: The float graph differs from torch.
        ValueError: The int8 graph disagrees with the float one beyond the ``INT8_*`` limits.
    """
    from export.torch_onnx import export_with_parity

    path = Path(config.out_dir) / f"{MODEL_NAME}.onnx"
    flushed = zero_denormals_(model)
    if flushed:
        logger.info("export: %d denormal weights set to zero", flushed)
    graph = deploy_graph(model, config)
    side = input_size(config)
    check = None
    if config.int8:
        with tempfile.TemporaryDirectory(prefix="export-") as tmp:
            float_path = Path(tmp) / "float.onnx"
            difference = export_with_parity(graph, float_path, side, OUTPUT_NAMES)
            float_proto = onnx.load(str(float_path))
        calibration, held_out = calibration_inputs(config)
        from export.int8 import quantize_int8

        quantized = quantize_int8(float_proto, calibration)
        check = int8_agreement(float_proto, quantized, held_out)
        logger.info("int8 vs float on %d held-out chips: %s", len(held_out), check)
        if (check["group_agreement"] < INT8_MIN_GROUP_AGREEMENT or check["gender_agreement"] <
                INT8_MIN_GENDER_AGREEMENT or check["mean_abs_years"] > INT8_MAX_MEAN_YEARS):
            raise ValueError(f"int8 export disagrees with the float graph ({check}); export without --int8")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(quantized.SerializeToString(deterministic=True))
    else:
        difference = export_with_parity(graph, path, side, OUTPUT_NAMES, fp16=config.fp16)
    left = count_denormal_weights(path)
    if left:
        raise ValueError(f"export: {path} still holds {left} denormal weights")
    return path, hashlib.sha256(path.read_bytes()).hexdigest(), difference, check


def input_size(config: TrainConfig) -> int:
    """Chip side the exported graph takes: the descriptor's under ``ensemble_size``, else the net's."""
    return config.ensemble_size or config.size


def deploy_graph(model: MultiHeadNet, config: TrainConfig) -> torch.nn.Module:
    """What is exported: the net with dlib's conv + affine pairs folded into single convs (a no-op for the Cydral
    trunks; same function), under flip TTA and in the descriptor ensemble as ``config`` says.

    Raises:
        ValueError: ``ensemble_size`` with the Cydral backbone (its chips use another template).
    """
    from models.fetch import model_path
    from models.training.descriptor_teacher import DescriptorEnsemble
    from models.training.dlib_resnet import DlibFaceDescriptor

    folded = fold_affine(model)
    graph = FlipAverage(folded).eval() if config.flip_tta else folded
    if not config.ensemble_size:
        return graph
    if config.backbone != "dlib":
        raise ValueError("--ensemble-size needs --backbone dlib (the descriptor reads dlib_chip_025 chips)")
    heads = ensemble_heads(config)
    descriptor = fold_affine(DlibFaceDescriptor(model_path("dlib_face_recognition")))
    return DescriptorEnsemble(graph, config.size, descriptor, heads).eval()


def _chip_cache(config: TrainConfig, size: int) -> tuple[object, dict[str, np.ndarray], np.ndarray]:
    """Samples, the chip cache at ``size`` (built if missing) and the training split's indices."""
    samples = list_samples(config.data, config.limit)
    train_idx, _ = split_indices(samples, config.seed, config.val_fraction)
    cfg = _stream_config()
    cache = build_chip_cache(samples, config.cache, lambda: _detector(cfg), TEMPLATES[config.backbone], (size,))
    return samples, cache, train_idx


def ensemble_heads(config: TrainConfig) -> torch.nn.Module:
    """Heads on dlib's descriptors of the training split's ``ensemble_size`` chips (and their mirror images)."""
    from models.training.descriptor_teacher import cached_descriptors, fit_heads

    samples, cache, train_idx = _chip_cache(config, config.ensemble_size)
    descriptors = cached_descriptors(samples, config.cache, cache["landmarks"], config.ensemble_size)
    return fit_heads(descriptors[train_idx], samples.age[train_idx], samples.group[train_idx],  # type: ignore[attr-defined]
                     samples.gender[train_idx], config.seed)  # type: ignore[attr-defined]


def calibration_inputs(config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint, evenly spaced sets of training chips as graph inputs: int8 calibration, int8 check."""
    side = input_size(config)
    _, cache, train_idx = _chip_cache(config, side)
    count = min(2 * INT8_CALIBRATION_CHIPS, len(train_idx))
    picked = train_idx[np.linspace(0, len(train_idx) - 1, count).round().astype(int)]
    inputs = to_input(torch.from_numpy(np.ascontiguousarray(cache[f"chips{side}"][picked]))).numpy()
    return inputs[0::2], inputs[1::2]


def int8_agreement(float_proto: onnx.ModelProto, quantized: onnx.ModelProto, inputs: np.ndarray) -> dict[str, float]:
    """How often the int8 graph makes the float graph's decisions: top-1 group, gender (P(female) >= 0.5), and
    the mean and largest change of the age estimate in years."""
    from export.int8 import compare_outputs

    (group_f, group_q), (age_f, age_q), (gender_f, gender_q) = compare_outputs(float_proto, quantized, inputs)
    years = np.abs(age_f.astype(np.float64) - age_q)
    return {"group_agreement": float((group_f.argmax(1) == group_q.argmax(1)).mean()),
            "gender_agreement": float(((gender_f >= 0) == (gender_q >= 0)).mean()),
            "mean_abs_years": float(years.mean()), "max_abs_years": float(years.max()), "n": float(len(inputs))}


def save_export_record(path: Path, config: TrainConfig, summary: dict[str, object], difference: float) -> None:
    """``<weights>.train.json`` beside an export: its config, training summary and parity, for a later card."""
    record = {"config": asdict(config), "summary": summary, "parity_difference": difference}
    path.with_suffix(".train.json").write_text(json.dumps(record, indent=1), encoding="utf-8")


def load_export_record(config: TrainConfig) -> tuple[Path, TrainConfig, dict[str, object], float]:
    """The export in ``config.out_dir`` and what :func:`save_export_record` kept of its run.

    The run's own settings win over ``config``'s, except where the files are now (``data``, ``cache``,
    ``out_dir``).

    Raises:
        ValueError: No export or no record in ``config.out_dir``.
    """
    path = Path(config.out_dir) / f"{MODEL_NAME}.onnx"
    record, run = _read_record(path, config, "--card-only", "from a --no-card run; train first")
    return path, run, record["summary"], float(record["parity_difference"])


def _read_record(path: Path, config: TrainConfig, option: str, hint: str) -> tuple[dict, TrainConfig]:
    """The ``.train.json`` record beside the export ``path`` and its run's config, with ``config``'s ``data``,
    ``cache``, ``out_dir`` and ``limit`` (where the files are now).

    Raises:
        ValueError: The export or its record is missing (``option`` needs them; ``hint`` says where from).
    """
    record_path = path.with_suffix(".train.json")
    if not path.is_file() or not record_path.is_file():
        raise ValueError(f"{option} needs {path} and {record_path} {hint}")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    known = asdict(TrainConfig())
    run = TrainConfig(**{k: v for k, v in record["config"].items() if k in known})
    return record, replace(run, data=config.data, cache=config.cache, out_dir=config.out_dir, limit=config.limit)


def load_exported_weights(path: Path, config: TrainConfig) -> tuple[MultiHeadNet, TrainConfig, dict[str, object]]:
    """The trained net inside an earlier float export of this recipe, its run's config and its summary.

    Reads ``path`` and the ``.train.json`` record beside it (:func:`save_export_record`). The ONNX initializers
    keep torch's parameter names (``_fp16`` appended for float16-stored weights, ``net.`` prefixed under flip
    TTA, ``X.weight`` for a folded ``X.conv`` + affine pair); the loaded net must then reproduce the file's
    outputs (the parity check of its export). The result takes the record's recipe, and from ``config`` where
    files are and the export settings (``int8``, ``flip_tta``, ``ensemble_size``).

    Raises:
        ValueError: No record, a quantized file, weights that do not fit the recipe's net, or outputs that differ.
    """
    from onnx import numpy_helper

    from export.torch_onnx import PARITY_TOLERANCE_FP16, PARITY_TOLERANCE_FP32, parity

    record, run = _read_record(path, config, "--from-weights", "(an earlier float export of this recipe)")
    run = replace(run, run_dir=config.run_dir, int8=config.int8, flip_tta=config.flip_tta,
                  ensemble_size=config.ensemble_size)
    proto = onnx.load(str(path))
    if any(init.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) for init in proto.graph.initializer):
        raise ValueError(f"{path} is quantized; --from-weights needs a float export (float32 or float16 weights)")
    source_flip = bool(record["config"].get("flip_tta", False))
    model = build_model(run)
    model.group_mix = run.group_mix
    target = model.state_dict()
    loaded: set[str] = set()
    with torch.no_grad():
        for init in proto.graph.initializer:
            name = init.name.removesuffix("_fp16")
            name = name.removeprefix("net.") if source_flip else name
            value = torch.from_numpy(numpy_helper.to_array(init).astype(np.float32).copy())
            stem = name.rsplit(".", 1)[0]
            if name in target:
                target[name].copy_(value.view_as(target[name]))
                loaded.add(name)
            elif f"{stem}.conv.weight" in target:  # a folded conv + affine: the affine becomes the identity
                target[name.replace(stem, f"{stem}.conv", 1)].copy_(value)
                target[f"{stem}.gamma"].fill_(1.0)
                target[f"{stem}.beta"].fill_(0.0)
                loaded |= {name.replace(stem, f"{stem}.conv", 1), f"{stem}.gamma", f"{stem}.beta"}
    missing = [k for k, _ in model.named_parameters() if k not in loaded]
    if missing:
        raise ValueError(f"{path} does not hold the {run.backbone} recipe's weights: {len(missing)} missing, e.g. "
                         f"{missing[0]!r}")
    graph = FlipAverage(model).eval() if source_flip else model.eval()
    inputs = np.random.default_rng(0).random((4, 3, run.size, run.size), dtype=np.float32) - 0.5
    difference = parity(graph, proto, inputs)
    tolerance = PARITY_TOLERANCE_FP16 if run.fp16 else PARITY_TOLERANCE_FP32
    if difference > tolerance:
        raise ValueError(f"the weights read from {path} differ from its outputs by {difference:.1e} > {tolerance}")
    summary = dict(record["summary"])
    summary["reexported_from"] = {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return model, run, summary


def count_denormal_weights(path: str | Path) -> int:
    """How many float32 initializer entries of an ONNX file are denormal (they slow CPU inference ~10x)."""
    from stream.runtime import flush_denormal_weights

    return flush_denormal_weights(Path(path))[1]


def candidate_name(path: Path, sha256: str, size: int, alignment: str = "dlib_chip") -> str:
    """Register the freshly exported file under a temporary name so ``models.training.evaluate`` can run it.

    The registry entry ``utk_multihead`` pins the committed file's sha256; a new export has another digest,
    so it is evaluated as ``utk_multihead@candidate`` with the same preprocessing.
    """
    from models.registry import MODELS, Trained, get_spec, register

    name = f"{MODEL_NAME}@candidate"
    base = get_spec(MODEL_NAME)
    relative = path.resolve().relative_to(REPO) if REPO in path.resolve().parents else path.resolve()
    spec = replace(base, name=name, sha256=sha256, sources=(Trained(str(relative)),), input_size=(size, size),
                   alignment=alignment)
    MODELS.pop(name, None)
    register(spec)
    return name


#: Settings that say where things are or how fast a run goes, not what it learns: left out of the command.
_NOT_RECIPE = ("data", "cache", "run_dir", "out_dir", "limit", "threads", "member")


def retrain_command(config: TrainConfig) -> str:
    """The one command that re-trains ``config``'s model: every recipe setting that differs from the defaults."""
    defaults = asdict(TrainConfig())
    parts = ["python -m models.training.train --data ../shared/data/utkface/UTKFace"]
    for key, value in asdict(config).items():
        if key in _NOT_RECIPE or value == defaults[key]:
            continue
        flag = "--" + key.replace("_", "-")
        parts.append(flag if isinstance(value, bool) else f"{flag} {value}")
    return " ".join(parts)


#: What each backbone starts from (all CC0), for the card's licence line.
_STARTING_WEIGHTS = {"cydral": "Cydral age and gender networks",
                     "dlib": "dlib's face-recognition ResNet, from the face_recognition_models package"}


def _network_line(config: TrainConfig) -> str:
    """The card's description of the network of ``config.backbone``."""
    if config.backbone == "dlib":
        return ("- Network (`models.training.nets.MultiHeadNet`): dlib's face-recognition ResNet (29 conv layers, "
                "metric-learnt on ~3M faces; read from its dlib file by `models.training.dlib_resnet`) as the one "
                "trunk, "
                f"fine-tuned at {config.size}x{config.size} (256-d pooled features; its descriptor layer dropped); "
                "heads: 8-group MLP, 101-bin age distribution (linear + residual MLP), gender logit, all new."
                + (f" Exported averaged with heads on dlib's frozen 128-d descriptor of the {config.ensemble_size}x"
                   f"{config.ensemble_size} chip (`models.training.descriptor_teacher.DescriptorEnsemble`: 2x256 "
                   "MLP, the "
                   "same three outputs, fitted on the training split's descriptors of each chip and its mirror "
                   "image); the graph takes that chip and resizes it (bilinear) to "
                   f"{config.size}x{config.size} for the fine-tuned net; group probabilities, ages and P(female) "
                   "of the two are averaged." if config.ensemble_size else ""))
    return ("- Network (`models.training.nets.MultiHeadNet`): the Cydral/dlib ResNet-10 age trunk ("
            + ("frozen" if config.freeze_age_trunk else "fine-tuned") + ", 256-d features) and "
            "the Cydral gender trunk on the 2x2-pooled chip (fine-tuned, 4096-d → 64), both loaded from their ONNX "
            "files into torch by `models.training.nets.OnnxGraphModule`; heads: 8-group MLP, 101-bin age distribution "
            "(linear, initialised from Cydral's 0..80 classifier, + residual MLP), gender logit (initialised from "
            "Cydral's).")


def _int8_line(check: dict[str, float]) -> str:
    return (f"Then quantized to int8 (`export/int8.py`: onnxruntime static quantization, QDQ, weights int8 per "
            f"channel, activations uint8 from min/max calibration on {INT8_CALIBRATION_CHIPS} training chips). On "
            f"{int(check['n'])} other training chips it makes the float graph's decisions: top-1 group "
            f"{check['group_agreement']:.1%}, gender {check['gender_agreement']:.1%}; the age estimate moves by "
            f"{check['mean_abs_years']:.2f} years on average, {check['max_abs_years']:.1f} at most (required: "
            f"≥ {INT8_MIN_GROUP_AGREEMENT:.0%}, ≥ {INT8_MIN_GENDER_AGREEMENT:.0%}, ≤ {INT8_MAX_MEAN_YEARS} years).")


def _reexport_line(source: dict[str, str]) -> str:
    return (f"Exported with `--from-weights` from the trained weights in `{source['file']}` (sha256 "
            f"`{source['sha256']}`): the training run above is that file's; only the export settings differ.")


def write_card(path: Path, config: TrainConfig, summary: dict, figures: dict[str, dict], sha256: str,
               parity_difference: float, ms_per_face: dict[str, float], mix_note: str = "") -> None:
    """The model card (markdown) next to the weights.

    ``mix_note`` says how ``group_mix`` was chosen (e.g. the validation-split sweep); empty: set by the flag.
    """
    ours, default = figures["candidate"], figures["cydral"]

    def row(label: str, key: str, fmt: str = "{:.3f}") -> str:
        return f"| {label} | {fmt.format(ours[key])} | {fmt.format(default[key])} |"

    size_mb = path.with_suffix(".onnx").stat().st_size / 1e6
    lines = [
        f"# {MODEL_NAME}: age group, age and gender (multi-head)",
        "",
        "**Licence: NON-COMMERCIAL research use only.** Trained on UTKFace, whose terms allow non-commercial "
        "research only; the weights inherit that restriction (`commercial_use=False` in the registry). The "
        f"starting weights ({_STARTING_WEIGHTS[config.backbone]}) are CC0.",
        "",
        "## Model",
        "",
        f"- File `models/weights/{MODEL_NAME}.onnx`, sha256 `{sha256}`, {size_mb:.1f} MB, opset 17, dynamic batch"
        f"{', int8 (static QDQ)' if config.int8 else ', fp16 weights' if config.fp16 else ', float32'}.",
        f"- Input `images` [N,3,{input_size(config)},{input_size(config)}] float32, RGB, (x - {list(MEAN_RGB)}) / 256; "
        f"chips aligned with the `{TEMPLATES[config.backbone]}` template (`stream.align`) from the detector's 5 "
        "landmarks.",
        "- Outputs: `group_logits` [N,8] (softmax → the 8 groups 01-10 … 80+), `age` [N] years (expectation "
        "of a 101-bin 0..100 distribution, so 80+ is reachable), `gender_logit` [N] (sigmoid = P(female)).",
        _network_line(config),
        *(["- Horizontal-flip test-time augmentation inside the graph (`models.training.nets.FlipAverage`, "
           "`--flip-tta`): "
           "one pass over the chips and their mirror images (batch 2N); group probabilities, ages and P(female) "
           "of the two passes are averaged (`group_logits` are then log-probabilities, `gender_logit` the logit "
           "of the mean). Twice the per-face cost of a single pass."] if config.flip_tta else []),
        "",
        "## Data and split",
        "",
        f"- UTKFace aligned & cropped (`{config.data}`), {summary['n_train'] + summary['n_val']} labelled images.",
        f"- Split: seed {config.seed}, {config.val_fraction:.0%} validation, stratified by age group x gender "
        f"(`models.training.data.split_indices`: sorted names, per-stratum shuffle): {summary['n_train']} train, "
        f"{summary['n_val']} validation. Reproduce the lists with `models.training.data.write_split_lists`.",
        "- Chips: yunet (config `detector: auto`) → central face's 5 landmarks → `align_faces`; detector misses "
        f"({summary['detector_misses_all']} of all images) use landmarks from the `utkface_crop` template.",
        "- Augmentation ("
        + ("gender path; the frozen age trunk's features are computed once on the plain chips" if
           config.freeze_age_trunk else "both trunks see the augmented chips" if config.backbone == "cydral"
           else "the trunk sees the augmented chips")
        + "): flip, affine jitter (±8°, ±8% scale, ±4% shift), colour jitter, down/up-scaling to 40-80% on a third "
        "of the faces.",
        "",
        "## Training",
        "",
        "- Loss: "
        + (f"class-weighted (~ frequency^-{config.class_weight_power}) " if config.class_weight_power else "")
        + f"CE on 8 groups (label smoothing {config.label_smoothing}) + DLDL KL "
        f"(σ = {config.age_sigma} + 0.03·age) + {config.l1_weight}·L1 years + {config.gender_weight}·BCE gender.",
        f"- AdamW lr {config.lr}, weight decay {config.weight_decay} ("
        + (f"gender trunk ×{config.backbone_lr_scale}, age trunk " if config.backbone == "cydral" else "trunk ")
        + ("frozen" if config.freeze_age_trunk else f"×{config.age_trunk_lr_scale}")
        + f"), cosine, {config.epochs} epochs, batch "
        f"{config.batch_size}, {config.size}x{config.size}, seed {config.seed}; "
        f"{summary.get('device_name') or summary['device']}, "
        f"{summary['threads']} threads, {summary['train_seconds'] / 60:.1f} min of training"
        + (f" ({summary['images_per_second']:.0f} images/s)" if "images_per_second" in summary else "")
        + ("; mixed precision (float16 autocast)" if summary.get("device") == "cuda" else "")
        + "; denormal floats flushed (`torch.set_flush_denormal`, and zeroed in the loaded weights and in "
        "the export: the file holds none).",
        *([f"- Distillation: {config.teachers} members of the same recipe were trained first (same split; seed "
           f"offsets 1000·k for the initial heads, shuffle, augmentation and dropout; run folders "
           f"`member<k>`); the exported net then learnt from the labels plus, at weight {config.kd_weight}, the "
           "members' averaged group probabilities and age distributions (KL) and mean P(female) (BCE), computed "
           "on the same augmented batch. Members at their last epoch (cached-chip validation): "
           + "; ".join(f"MAE {m['val_mae']:.2f}, group {m['val_group_accuracy']:.3f}, gender "
                       f"{m['val_gender_accuracy']:.3f}" for m in summary.get("members", []))
           + "."] if config.teachers else []),
        *([f"- Descriptor teacher (`models.training.descriptor_teacher`, weight {config.descriptor_teacher} of the "
           "soft targets" + (", the members' average the rest" if config.teachers else "") + "): heads on dlib's "
           "frozen 128-d face-recognition descriptor (150x150 `dlib_chip_025` chips and their mirror images), "
           f"cross-fitted in {FOLDS} folds of the training split, so each training image's targets come from heads "
           "that never saw it."] if config.descriptor_teacher else []),
        "- Re-train (same result up to float nondeterminism of threads and GPU kernels): "
        f"`{retrain_command(config)}` (aligned chips are cached under `{config.cache}`).",
        f"- `group_logits` blend (`MultiHeadNet.group_mix` = {config.group_mix}): "
        + ("the group head alone." if config.group_mix == 0 else
           f"log((1 - {config.group_mix})·softmax(group head) + {config.group_mix}·P(group | age distribution)); "
           + ("the class-weighted group head favours rare groups, " if config.class_weight_power else "")
           + "the age distribution follows the data's prior. "
           + (mix_note or "Set with `--group-mix`; not tuned for this run.")),
        "",
        "## Validation figures (runtime path: detector → landmarks → alignment → onnxruntime)",
        "",
        f"Validation split, {ours['n']} faces, detector misses {ours['detector_misses']} (scored via the fallback "
        "crop). Same faces, same detections for both models (`python -m models.training.evaluate --split val "
        "--model cydral --model utk_multihead`).",
        "",
        f"| metric | {MODEL_NAME} | default (cydral_age + cydral_gender) |",
        "|---|---|---|",
        row("age MAE (years)", "mae", "{:.2f}"),
        row("CS@5", "cs5"),
        row("8-group accuracy", "group_accuracy"),
        row("1-off group accuracy", "one_off_accuracy"),
        row("macro F1 (8 groups)", "macro_f1"),
        f"| 80+ F1 | {ours['per_age_group']['80+']['f1']:.3f} | {default['per_age_group']['80+']['f1']:.3f} |",
        row("gender accuracy", "gender_accuracy"),
        row("gender accuracy, age > 12", "gender_accuracy_above_12"),
        row("gender accuracy, age ≤ 12", "gender_accuracy_12_and_under"),
        f"| CPU ms per face (age+gender, batch 8) | {ms_per_face['candidate']:.3f} | {ms_per_face['cydral']:.3f} |",
        "",
        "Per age group (MAE years / F1 / gender accuracy), ours vs default:",
        "",
        "| group | n | MAE | F1 | gender | default MAE | default F1 | default gender |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in AGE_GROUPS:
        a, b = ours["per_age_group"][name], default["per_age_group"][name]
        lines.append(f"| {name} | {a['n']} | {a['mae']:.2f} | {a['f1']:.3f} | {a['gender_accuracy']:.3f} | "
                     f"{b['mae']:.2f} | {b['f1']:.3f} | {b['gender_accuracy']:.3f} |")
    lines += ["", "Per race (MAE / macro F1 / gender accuracy), ours vs default:", "",
              "| race | n | MAE | macro F1 | gender | default MAE | default macro F1 | default gender |",
              "|---|---|---|---|---|---|---|---|"]
    for name, a in ours["per_race"].items():
        b = default["per_race"][name]
        lines.append(f"| {name} | {a['n']} | {a['mae']:.2f} | {a['macro_f1']:.3f} | {a['gender_accuracy']:.3f} | "
                     f"{b['mae']:.2f} | {b['macro_f1']:.3f} | {b['gender_accuracy']:.3f} |")
    lines += ["", "Confusion matrix (rows true, columns predicted):", "",
              "| true \\ pred | " + " | ".join(AGE_GROUPS) + " |", "|---" * (len(AGE_GROUPS) + 1) + "|"]
    for name, counts in zip(AGE_GROUPS, ours["confusion_matrix"]):
        lines.append(f"| {name} | " + " | ".join(str(c) for c in counts) + " |")
    lines += [
        "",
        "## Export",
        "",
        f"`export/torch_onnx.py` (TorchScript exporter, opset 17, dynamic batch, onnx.checker; dlib's conv + "
        f"affine pairs folded into single convs, `models.training.dlib_resnet.fold_affine`); onnxruntime vs torch "
        f"max abs difference {parity_difference:.1e} (tolerance 1e-3 fp32 / 0.1 fp16 weights)"
        + (" for the float graph." if config.int8 else "."),
        *(["", _int8_line(summary["int8_check"])] if config.int8 and summary.get("int8_check") else []),
        *(["", _reexport_line(summary["reexported_from"])] if summary.get("reexported_from") else []),
        "",
        "## Per-epoch log (validation on cached chips)",
        "",
        "```",
        *[json.dumps(entry) for entry in summary["history"]],
        "```",
        "",
        "## Limitations",
        "",
        "- UTKFace labels are partly estimated and its faces are mostly frontal, well-lit photos; video faces "
        "are smaller, blurrier and more varied. The validation split is from the same distribution as training.",
        "- Gender is a binary label in UTKFace; the model predicts apparent gender only.",
        "- Rare groups (80+, and older faces of some races) have few validation samples; their figures are noisy.",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m models.training.train", description=__doc__.split("\n\n")[0])
    for key, value in asdict(defaults).items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true", help=f"(default {value})")
        else:
            parser.add_argument(flag, type=type(value), default=value, help=f"(default {value})")
    parser.add_argument("--resume", action="store_true", help="continue from <run-dir>/last.pt")
    parser.add_argument("--no-export", action="store_true", help="train only")
    parser.add_argument("--no-card", action="store_true",
                        help="export without the evaluation and card (keeps what the card needs beside the weights)")
    parser.add_argument("--from-weights", default=None, metavar="ONNX",
                        help="no training: export again the trained weights of an earlier float export of this "
                             "recipe (its .train.json beside it) with this command's --int8/--flip-tta/--ensemble-size")
    parser.add_argument("--card-only", action="store_true",
                        help="no training: evaluate the export a --no-card run left in --out-dir and write its card "
                             "(train on a GPU machine without the images, card where they are)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = TrainConfig(**{k: getattr(args, k) for k in asdict(defaults)})
    if not 0.0 <= config.camera_augment <= 1.0:
        print(f"error: --camera-augment must be a share in [0, 1], got {config.camera_augment}", file=sys.stderr)
        return 2
    try:
        if args.card_only:
            path, config, summary, difference = load_export_record(config)
            sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            if args.from_weights:
                model, config, summary = load_exported_weights(Path(args.from_weights), config)
            else:
                model, summary = train(config, resume=args.resume)
                if args.no_export:
                    return 0
            path, sha256, difference, int8_check = export(model, config)
            summary["int8_check"] = int8_check
            print(f"exported {path} ({path.stat().st_size / 1e6:.2f} MB) sha256 {sha256}, parity max abs diff "
                  f"{difference:.2e}")
            save_export_record(path, config, summary, difference)
            if args.no_card:
                return 0
        from models.training.evaluate import evaluate, format_figures

        name = candidate_name(path, sha256, input_size(config), TEMPLATES[config.backbone])
        results = evaluate(config.data, ["cydral", name], split="val", seed=config.seed,
                           val_fraction=config.val_fraction, limit=config.limit)
        figures = {"candidate": results[name], "cydral": results["cydral"]}
        for label, entry in figures.items():
            print(format_figures(label, entry))
        ms = {k: float(v["ms_per_face"]) for k, v in figures.items()}
        card = path.with_suffix(".md")
        write_card(card, config, summary, figures, sha256, difference, ms)
        Path(config.run_dir).mkdir(parents=True, exist_ok=True)
        (Path(config.run_dir) / "figures.json").write_text(json.dumps({**figures, "summary": summary}, indent=2),
                                                           encoding="utf-8")
        print(f"wrote {card}; register sha256 {sha256} for {MODEL_NAME} in models/registry.py")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
