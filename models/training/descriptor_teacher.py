"""A second, different teacher for distillation: heads on dlib's face-recognition descriptor.

dlib's face-recognition ResNet (``models.training.dlib_resnet``, 150x150 chips, ~0.4 GMAC a face) is too slow for the
per-face CPU budget, but its 128-d descriptor, learnt from ~3M faces for identity, carries age and gender well:
small heads on the frozen descriptor score about as well on our validation split as our fine-tuned net, and
their errors differ from its (averaging the two is several points better than either). So ``models.training.train``
can distil from it (``--descriptor-teacher W``): the soft targets become ``(1 - W)`` x the members' average
+ ``W`` x this teacher's.

The same heads, fitted on the whole training split, are also the descriptor half of
:class:`DescriptorEnsemble` (``models.training.train --ensemble-size S``): the exported graph averages our net with
them, reading dlib's descriptor at ``S`` x ``S`` (136 costs 0.8x of 150 and keeps most of its accuracy).

Targets are computed once per image (not per augmented batch: the descriptor net is too slow for that) from
the descriptors of the chip and its mirror image, and the heads are cross-fitted: each training image's
targets come from heads trained on the other folds, so they are as wrong as on unseen faces, not memorised.
Everything is cached beside the chips (``dlib_descriptors.npy``, ``descriptor_targets_seed<k>.npz``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from models.training.dlib_resnet import CHIP, DlibFaceDescriptor
from models.training.nets import AGE_BINS, age_targets, to_input
from stream.types import AGE_GROUPS

logger = logging.getLogger(__name__)

TEMPLATE = "dlib_chip_025"
FOLDS = 5
#: Descriptor entries are ~0.1; scaled so the heads' default initialisation fits them.
SCALE = 10.0
KEYS = ("group_probs", "age_probs", "p_female")


def compute_descriptors(model_file: str | Path, chips: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """``(n, 2, 128)`` float32 descriptors of ``(n, S, S, 3)`` uint8 BGR chips and of their mirror images."""
    net = DlibFaceDescriptor(model_file).eval()
    out = np.zeros((len(chips), 2, 128), np.float32)
    started = time.time()
    with torch.no_grad():
        for start in range(0, len(chips), batch_size):
            x = to_input(torch.from_numpy(np.ascontiguousarray(chips[start : start + batch_size])))
            out[start : start + batch_size, 0] = net(x).numpy()
            out[start : start + batch_size, 1] = net(x.flip(3)).numpy()
            if start // batch_size % 20 == 0:
                logger.info("descriptors %d/%d (%.0f s)", start + len(x), len(chips), time.time() - started)
    return out


def _heads() -> nn.Module:
    return nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 256), nn.ReLU(),
                         nn.Dropout(0.3), nn.Linear(256, len(AGE_GROUPS) + AGE_BINS + 1))


def _label_dist(age: torch.Tensor) -> torch.Tensor:
    return age_targets(age, 2.0)


def fit_heads(descriptors: np.ndarray, age: np.ndarray, group: np.ndarray, gender: np.ndarray, seed: int,
              epochs: int = 60, batch_size: int = 256) -> nn.Module:
    """Group, age-distribution and gender heads on ``(n, 2, 128)`` descriptors (either view, at random)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = _heads()
    x_all = torch.from_numpy(descriptors) * SCALE
    age_t, group_t = torch.from_numpy(age).float(), torch.from_numpy(group).long()
    gender_t = torch.from_numpy(gender).float()
    steps = max(1, len(x_all) // batch_size)
    optimizer = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2e-3, total_steps=epochs * steps)
    n_bins = len(AGE_GROUPS)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_all), generator=generator)
        for step in range(steps):
            idx = order[step * batch_size : (step + 1) * batch_size]
            view = torch.randint(0, 2, (len(idx),), generator=generator)
            out = net(x_all[idx, view])
            loss = (F.cross_entropy(out[:, :n_bins], group_t[idx], label_smoothing=0.05)
                    + F.kl_div(F.log_softmax(out[:, n_bins:-1], 1), _label_dist(age_t[idx]), reduction="batchmean")
                    + 2.0 * F.binary_cross_entropy_with_logits(out[:, -1], gender_t[idx]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return net.eval()


def head_probabilities(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw head outputs ``(n, 8 + 101 + 1)`` → group probabilities, age-bin probabilities, P(female)."""
    n_groups = len(AGE_GROUPS)
    return (torch.softmax(out[:, :n_groups], 1), torch.softmax(out[:, n_groups:-1], 1),
            torch.sigmoid(out[:, -1]))


@torch.no_grad()
def predict_heads(net: nn.Module, descriptors: np.ndarray) -> dict[str, np.ndarray]:
    """Flip-averaged ``group_probs (n,8)``, ``age_probs (n,101)``, ``p_female (n,)``."""
    views = [head_probabilities(net(torch.from_numpy(descriptors[:, view]) * SCALE)) for view in (0, 1)]
    return {key: ((a + b) / 2).numpy() for key, a, b in zip(KEYS, *views)}


class DescriptorEnsemble(nn.Module):
    """Our net averaged with heads on dlib's frozen descriptor, as one graph for export.

    Input: ``(n, 3, S, S)`` normalised ``dlib_chip_025`` chips at the descriptor's side ``S``; the net reads them
    resized (bilinear) to its own side. Group probabilities, ages and P(female) of the two are averaged (outputs
    as :class:`models.training.nets.FlipAverage`'s: log-probabilities, years, the logit of the mean). The two err
    differently (a metric-learnt identity descriptor vs a net fine-tuned on the labels), so the average beats
    either; the cost is the descriptor's pass (0.3 GMAC a face at 136).

    Args:
        net: Module mapping ``(n, 3, size, size)`` → ``(group_logits, age, gender_logit)``.
        size: The net's chip side.
        descriptor: dlib's face-recognition network (``models.training.dlib_resnet.DlibFaceDescriptor``), frozen.
        heads: Heads fitted on its descriptors (:func:`fit_heads`).
    """

    def __init__(self, net: nn.Module, size: int, descriptor: nn.Module, heads: nn.Module) -> None:
        super().__init__()
        self.net, self.size, self.descriptor, self.heads = net, size, descriptor, heads
        self.register_buffer("bin_ages", torch.arange(AGE_BINS, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        small = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        group_logits, age, gender_logit = self.net(small)
        group_probs, age_probs, p_female = head_probabilities(self.heads(self.descriptor(x) * SCALE))
        group = torch.log(((torch.softmax(group_logits, 1) + group_probs) * 0.5).clamp_min(1e-12))
        years = (age + (age_probs * self.bin_ages).sum(1)) * 0.5
        p = ((torch.sigmoid(gender_logit) + p_female) * 0.5).clamp(1e-7, 1 - 1e-7)
        return group, years, torch.log(p) - torch.log1p(-p)


def cross_fitted_targets(descriptors: np.ndarray, age: np.ndarray, group: np.ndarray, gender: np.ndarray,
                         train_idx: np.ndarray, val_idx: np.ndarray, seed: int,
                         folds: int = FOLDS, epochs: int = 60) -> dict[str, np.ndarray]:
    """Teacher outputs for every image: out-of-fold for ``train_idx``, from heads on all of it for ``val_idx``.

    Rows of images in neither set stay zero.
    """
    n = len(descriptors)
    targets = {"group_probs": np.zeros((n, len(AGE_GROUPS)), np.float32),
               "age_probs": np.zeros((n, AGE_BINS), np.float32), "p_female": np.zeros(n, np.float32)}
    shuffled = np.random.default_rng(seed).permutation(train_idx)
    parts = np.array_split(shuffled, folds)
    for k, held_out in enumerate(parts):
        fit_idx = np.concatenate([p for j, p in enumerate(parts) if j != k])
        net = fit_heads(descriptors[fit_idx], age[fit_idx], group[fit_idx], gender[fit_idx], seed + k, epochs)
        for key, value in predict_heads(net, descriptors[held_out]).items():
            targets[key][held_out] = value
        logger.info("descriptor teacher: fold %d/%d done", k + 1, folds)
    if len(val_idx):
        net = fit_heads(descriptors[train_idx], age[train_idx], group[train_idx], gender[train_idx], seed + folds,
                        epochs)
        for key, value in predict_heads(net, descriptors[val_idx]).items():
            targets[key][val_idx] = value
    return targets


def cached_descriptors(samples: object, cache: str | Path, landmarks: np.ndarray, size: int = CHIP) -> np.ndarray:
    """``(n, 2, 128)`` descriptors of ``samples``' ``size`` x ``size`` chips and their mirror images, cached under
    ``cache`` (``dlib_descriptors.npy`` at 150, ``dlib_descriptors_<size>.npy`` otherwise).

    Computing them needs the images and the dlib model file (``python -m models fetch dlib_face_recognition``).
    """
    from models.fetch import model_path
    from models.training.data import make_chips

    folder = Path(cache)
    names = np.asarray([Path(p).name for p in samples.paths])  # type: ignore[attr-defined]
    suffix = "" if size == CHIP else f"_{size}"
    descriptor_file = folder / f"dlib_descriptors{suffix}.npy"
    descriptor_names = folder / f"dlib_descriptors{suffix}_names.npy"
    if descriptor_file.is_file() and descriptor_names.is_file() and np.array_equal(np.load(descriptor_names), names):
        return np.load(descriptor_file)
    chips = make_chips(samples.paths, landmarks, TEMPLATE, size)  # type: ignore[attr-defined]
    descriptors = compute_descriptors(model_path("dlib_face_recognition"), chips)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(descriptor_file, descriptors)
    np.save(descriptor_names, names)
    return descriptors


def descriptor_targets(samples: object, cache: str | Path, train_idx: np.ndarray, val_idx: np.ndarray, seed: int,
                       landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """The descriptor teacher's targets for ``samples`` (a ``models.training.data.Samples``), cached under ``cache``.

    A cache made elsewhere for the same images and split is used as it is.
    """
    folder = Path(cache)
    names = np.asarray([Path(p).name for p in samples.paths])  # type: ignore[attr-defined]
    path = folder / f"descriptor_targets_seed{seed}.npz"
    if path.is_file():
        stored = np.load(path)
        if np.array_equal(stored["names"], names) and np.array_equal(stored["train_idx"], train_idx):
            return {key: stored[key] for key in KEYS}
        logger.info("descriptor teacher: %s is for other images or another split; recomputing", path)
    descriptors = cached_descriptors(samples, cache, landmarks)
    targets = cross_fitted_targets(descriptors, samples.age, samples.group, samples.gender,  # type: ignore[attr-defined]
                                   train_idx, val_idx, seed)
    np.savez(path, names=names, train_idx=train_idx, **targets)
    return targets
