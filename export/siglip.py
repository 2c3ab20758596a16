"""A Hugging Face SigLIP age-group classifier → ONNX that outputs our 8 age-group probabilities.

The seed app's classifier is ``prithivMLmods/facial-age-detection`` (``SiglipForImageClassification``:
google/siglip2-base-patch16-512 fine-tuned to 8 age groups). On a machine that can reach the hub::

    python -m export.siglip --checkpoint prithivMLmods/facial-age-detection

writes ``siglip_age.onnx`` and its manifest into the model cache; then
``python -m stream ... --set classifier.age_model=siglip_age`` uses it. Any other fine-tuned SigLIP
checkpoint (hub id or local directory) exports the same way under its own ``--name``, with the licence the
user states; its manifest makes it a registry entry like the built-in ones.

The graph is ``pixel_values (N, 3, S, S)`` → ``age_group_probs (N, 8)``: the checkpoint's logits are
re-ordered from its ``id2label`` onto :data:`stream.types.AGE_GROUPS` (matched by the numeric ranges in
the labels, e.g. ``"age 01-10"`` → ``"01-10"``, ``"age 80 +"`` → ``"80+"``) and the softmax is inside.
Preprocessing is read from the checkpoint's ``preprocessor_config.json`` (size, mean, std, rescale) and
declared in the manifest; the stream feeds an aligned RGB chip (template ``mtcnn_box``, the seed's box crop).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from export._common import OPSET, max_abs_diff, save, session, versions
from models.registry import Export, ModelSpec, get_spec, is_builtin
from stream.types import AGE_GROUPS

SEED_CHECKPOINT = "prithivMLmods/facial-age-detection"
#: Parity tolerance (max |onnxruntime - torch| on the 8 probabilities, fp32).
TOLERANCE = 1e-4
TOLERANCE_FP16 = 2e-2
OUTPUT_NAME = "age_group_probs"

_RANGE = re.compile(r"(\d+)\s*(?:-|–|to)\s*(\d+)")
_OPEN = re.compile(r"(\d+)\s*\+")


def _age_range(label: str) -> tuple[int, int | None]:
    """``"age 01-10"`` → ``(1, 10)``, ``"age 80 +"`` → ``(80, None)``.

    Raises:
        ValueError: No age range in ``label``.
    """
    found = _RANGE.search(label)
    if found:
        return int(found.group(1)), int(found.group(2))
    found = _OPEN.search(label)
    if found:
        return int(found.group(1)), None
    raise ValueError(f"label {label!r} names no age range like '21-30' or '80+'")


def label_order(id2label: dict[int, str] | dict[str, str]) -> list[int]:
    """Checkpoint class index for each of :data:`AGE_GROUPS`, in that order.

    Args:
        id2label: The checkpoint config's mapping (keys may be strings, as in config.json).

    Returns:
        ``order`` with ``logits[:, order]`` in AGE_GROUPS order.

    Raises:
        ValueError: Not 8 labels, or labels that do not match our groups one-to-one (names them).
    """
    labels = {int(k): v for k, v in id2label.items()}
    if len(labels) != len(AGE_GROUPS):
        raise ValueError(f"id2label must have {len(AGE_GROUPS)} labels, got {len(labels)}: {sorted(labels.values())}")
    by_range = {}
    for index, label in labels.items():
        key = _age_range(label)
        if key in by_range:
            raise ValueError(f"id2label: {label!r} and {labels[by_range[key]]!r} name the same age range")
        by_range[key] = index
    order = []
    for group in AGE_GROUPS:
        key = _age_range(group)
        if key not in by_range:
            raise ValueError(f"id2label {sorted(labels.values())} has no label for age group {group!r}")
        order.append(by_range[key])
    return order


class AgeGroupHead(nn.Module):
    """``pixel_values (N, 3, S, S)`` → ``(N, 8)`` probabilities in AGE_GROUPS order (softmax inside)."""

    def __init__(self, model: nn.Module, order: list[int], fp16: bool = False) -> None:
        super().__init__()
        self.model = model.half() if fp16 else model
        self.fp16 = fp16
        self.register_buffer("order", torch.tensor(order, dtype=torch.int64))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.fp16:
            pixel_values = pixel_values.half()
        logits = self.model(pixel_values=pixel_values).logits.float()
        return torch.softmax(logits.index_select(1, self.order), dim=1)


def preprocessing(checkpoint: str, image_size: int) -> dict[str, Any]:
    """Input size and normalisation from the checkpoint's ``preprocessor_config.json``.

    Falls back to SigLIP's defaults (size from the model config, rescale 1/255, mean = std = 0.5) for
    values the file does not give.

    Returns:
        ``size`` (int), ``mean``/``std`` (3-tuples on the 0-255 scale, RGB), ``resample`` (PIL code or None).
    """
    config: dict[str, Any] = {}
    local = Path(checkpoint) / "preprocessor_config.json"
    if local.is_file():
        config = json.loads(local.read_text(encoding="utf-8"))
    elif not Path(checkpoint).exists():
        from huggingface_hub import hf_hub_download

        config = json.loads(Path(hf_hub_download(checkpoint, "preprocessor_config.json")).read_text(encoding="utf-8"))
    size = config.get("size", {})
    height, width = size.get("height", image_size), size.get("width", image_size)
    if height != width:
        raise ValueError(f"checkpoint {checkpoint}: preprocessor size must be square, got {height}x{width}")
    rescale = float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0
    normalize = config.get("do_normalize", True)
    mean = [float(m) for m in config.get("image_mean", [0.5] * 3)] if normalize else [0.0] * 3
    std = [float(s) for s in config.get("image_std", [0.5] * 3)] if normalize else [1.0] * 3
    return {
        "size": int(height),
        # x_net = (x * rescale - mean) / std = (x - mean / rescale) / (std / rescale) on the 0-255 scale.
        "mean": tuple(round(m / rescale, 6) for m in mean),
        "std": tuple(round(s / rescale, 6) for s in std),
        "resample": config.get("resample"),
    }


def load_checkpoint(checkpoint: str) -> nn.Module:
    """``AutoModelForImageClassification`` in eval mode with eager attention (traces into plain ONNX ops)."""
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(checkpoint, attn_implementation="eager")
    return model.eval()


def _spec(name: str, checkpoint: str, prep: dict[str, Any], licence: str, commercial_use: bool,
          id2label: dict[int, str]) -> ModelSpec:
    size = prep["size"]
    extras = {"checkpoint": checkpoint, "id2label": {str(k): v for k, v in sorted(id2label.items())},
              "age_groups": list(AGE_GROUPS), "resample": prep["resample"]}
    if is_builtin(name):
        builtin = get_spec(name)
        if builtin.export is None or builtin.family != "age_group8":
            raise ValueError(f"name: {name!r} is a built-in model of another kind; choose another --name")
        declared = (builtin.input_size, builtin.mean, builtin.std)
        if declared != ((size, size), prep["mean"], prep["std"]):
            raise ValueError(
                f"name: {checkpoint} has size {size}, mean {prep['mean']}, std {prep['std']}; the registry entry "
                f"{name!r} declares {declared}; export it under another --name"
            )
        return replace(builtin, extras=extras)
    return ModelSpec(
        name=name,
        task="age_group",
        family="age_group8",
        file_name=f"{name}.onnx",
        sha256="",
        sources=(Export(f"python -m export.siglip --checkpoint {checkpoint} --name {name}"),),
        input_size=(size, size),
        color="RGB",
        mean=prep["mean"],
        std=prep["std"],
        alignment="mtcnn_box",
        outputs=f"{OUTPUT_NAME} [N,8] (softmax inside), columns in stream.types.AGE_GROUPS order",
        licence=licence,
        commercial_use=commercial_use,
        provenance=f"{checkpoint} (SigLIP image classifier), exported by export.siglip",
        extras=extras,
    )


def export(
    checkpoint: str,
    *,
    name: str = "siglip_age",
    licence: str = "",
    commercial_use: bool = True,
    fp16: bool = False,
    out_dir: Path | None = None,
    model: nn.Module | None = None,
) -> dict[str, object]:
    """Export, check, compare with torch at batch 1 and 3, write the file and (into the cache) its manifest.

    Args:
        checkpoint: Hub id or local directory of a ``*ForImageClassification`` SigLIP checkpoint.
        name: Registry name of the result (``siglip_age`` = the seed model's built-in entry).
        licence: Licence of the weights; required unless ``name`` is a built-in entry.
        commercial_use: False when the weights or their training data forbid commercial use.
        fp16: Float16 weights and compute (input and output stay float32).
        out_dir: Write here instead of the model cache (no manifest then).
        model: An already loaded model (tests); else loaded from ``checkpoint``.

    Returns:
        Report: ``path``, ``max_abs_diff``, ``tolerance``, ``order`` (checkpoint index per age group).

    Raises:
        ValueError: Unmappable labels, a non-square input, a missing licence, or a name clash (named).
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"name must be letters, digits, '_', '.' or '-', got {name!r}")
    model = model if model is not None else load_checkpoint(checkpoint)
    config = model.config
    if getattr(config, "model_type", "") not in ("siglip", "siglip2"):
        raise ValueError(f"checkpoint: expected a SigLIP classifier, got model_type {config.model_type!r}")
    if config.model_type == "siglip2":
        raise ValueError("checkpoint: Siglip2 NaFlex models take patch sequences, not images; use a fixed-"
                         "resolution SigLIP(2) checkpoint (model_type 'siglip')")
    order = label_order(config.id2label)
    prep = preprocessing(checkpoint, int(config.vision_config.image_size))
    if not licence and not is_builtin(name):
        raise ValueError("licence: say under which licence the checkpoint's weights are published (--licence)")
    spec = _spec(name, checkpoint, prep, licence, commercial_use, dict(config.id2label))

    head = AgeGroupHead(model, order).eval()
    exported = AgeGroupHead(_copy(model), order, fp16=True).eval() if fp16 else head
    size = prep["size"]
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            exported, (torch.zeros(1, 3, size, size),), buffer, dynamo=False, opset_version=OPSET,
            input_names=["pixel_values"], output_names=[OUTPUT_NAME],
            dynamic_axes={"pixel_values": {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, do_constant_folding=True,
        )
    import onnx

    proto = onnx.load_from_string(buffer.getvalue())
    runner = session(buffer.getvalue())
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch in (1, 3):
        x = rng.uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)
        with torch.no_grad():
            reference = head(torch.from_numpy(x)).numpy()
        worst = max(worst, max_abs_diff([reference], runner.run([OUTPUT_NAME], {"pixel_values": x})))
    tolerance = TOLERANCE_FP16 if fp16 else TOLERANCE
    report: dict[str, object] = {
        "max_abs_diff": worst, "tolerance": tolerance, "batches": [1, 3], "fp16": fp16, "opset": OPSET,
        "order": order, "tools": versions("torch", "transformers", "onnx", "onnxruntime"),
    }
    path = save(proto, spec, {"parity_vs_torch": report, "checkpoint": checkpoint}, out_dir)
    return {**report, "path": str(path), "name": name}


def _copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.siglip", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=SEED_CHECKPOINT, help="hub id or local directory")
    parser.add_argument("--name", default="siglip_age", help="registry name of the export")
    parser.add_argument("--licence", default="", help="licence of the weights (required for names not built in)")
    parser.add_argument("--non-commercial", action="store_true", help="the weights or data forbid commercial use")
    parser.add_argument("--fp16", action="store_true", help="float16 weights and compute (I/O stay float32)")
    parser.add_argument("--out", type=Path, default=None, help="write here instead of the model cache")
    args = parser.parse_args(argv)
    report = export(args.checkpoint, name=args.name, licence=args.licence, commercial_use=not args.non_commercial,
                    fp16=args.fp16, out_dir=args.out)
    ok = float(report["max_abs_diff"]) <= float(report["tolerance"])  # type: ignore[arg-type]
    groups = ", ".join(f"{g}<-{i}" for g, i in zip(AGE_GROUPS, report["order"], strict=True))  # type: ignore[call-overload]
    print(f"{report['name']}: {report['path']}  max|onnxruntime - torch| = {report['max_abs_diff']:.2e} "
          f"(tolerance {report['tolerance']:.0e}) {'ok' if ok else 'FAILED'}")
    print(f"  age group <- checkpoint class: {groups}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
