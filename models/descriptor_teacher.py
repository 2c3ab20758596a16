"""A second, different teacher for distillation: heads on dlib's face-recognition descriptor.

dlib's face-recognition ResNet (``models.dlib_resnet``, 150x150 chips, ~0.4 GMAC a face) is too slow for the
per-face CPU budget, but its 128-d descriptor, learnt from ~3M faces for identity, carries age and gender well:
small heads on the frozen descriptor score about as well on our validation split as our fine-tuned net, and
their errors differ from its (averaging the two is several points better than either). So ``models.train``
can distil from it (``--descriptor-teacher W``): the soft targets become ``(1 - W)`` x the members' average
+ ``W`` x this teacher's.

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

from models.dlib_resnet import CHIP, DlibFaceDescriptor
from stream.types import AGE_GROUPS

logger = logging.getLogger(__name__)

TEMPLATE = "dlib_chip_025"
AGE_BINS = 101
FOLDS = 5
#: Descriptor entries are ~0.1; scaled so the heads' default initialisation fits them.
SCALE = 10.0
KEYS = ("group_probs", "age_probs", "p_female")


def compute_descriptors(model_file: str | Path, chips: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """``(n, 2, 128)`` float32 descriptors of ``(n, 150, 150, 3)`` uint8 BGR chips and of their mirror images."""
    from models.train import to_input  # models.train imports this module

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
    from models.train import age_targets  # models.train imports this module

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


@torch.no_grad()
def predict_heads(net: nn.Module, descriptors: np.ndarray) -> dict[str, np.ndarray]:
    """Flip-averaged ``group_probs (n,8)``, ``age_probs (n,101)``, ``p_female (n,)``."""
    n_bins = len(AGE_GROUPS)
    outs = [net(torch.from_numpy(descriptors[:, view]) * SCALE) for view in (0, 1)]
    return {
        "group_probs": (sum(torch.softmax(o[:, :n_bins], 1) for o in outs) / 2).numpy(),
        "age_probs": (sum(torch.softmax(o[:, n_bins:-1], 1) for o in outs) / 2).numpy(),
        "p_female": (sum(torch.sigmoid(o[:, -1]) for o in outs) / 2).numpy(),
    }


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


def descriptor_targets(samples: object, cache: str | Path, train_idx: np.ndarray, val_idx: np.ndarray, seed: int,
                       landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """The descriptor teacher's targets for ``samples`` (a ``models.data.Samples``), cached under ``cache``.

    Computing them needs the images (for the 150x150 chips) and the dlib model file (``python -m models fetch
    dlib_face_recognition``); a cache made elsewhere for the same images and split is used as it is.
    """
    from models.data import make_chips
    from models.fetch import model_path

    folder = Path(cache)
    names = np.asarray([Path(p).name for p in samples.paths])  # type: ignore[attr-defined]
    path = folder / f"descriptor_targets_seed{seed}.npz"
    if path.is_file():
        stored = np.load(path)
        if np.array_equal(stored["names"], names) and np.array_equal(stored["train_idx"], train_idx):
            return {key: stored[key] for key in KEYS}
        logger.info("descriptor teacher: %s is for other images or another split; recomputing", path)
    descriptor_file = folder / "dlib_descriptors.npy"
    descriptor_names = folder / "dlib_descriptors_names.npy"
    if descriptor_file.is_file() and descriptor_names.is_file() and np.array_equal(np.load(descriptor_names), names):
        descriptors = np.load(descriptor_file)
    else:
        chips = make_chips(samples.paths, landmarks, TEMPLATE, CHIP)  # type: ignore[attr-defined]
        descriptors = compute_descriptors(model_path("dlib_face_recognition"), chips)
        np.save(descriptor_file, descriptors)
        np.save(descriptor_names, names)
    targets = cross_fitted_targets(descriptors, samples.age, samples.group, samples.gender,  # type: ignore[attr-defined]
                                   train_idx, val_idx, seed)
    np.savez(path, names=names, train_idx=train_idx, **targets)
    return targets
