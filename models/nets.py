"""Torch definitions: an ONNX→torch loader for small conv graphs, and the project's multi-head age/gender net.

The Cydral age network (dlib ResNet-10 style, face-pretrained on ~110k private images, CC0) is the only
face-pretrained backbone available offline, so we start from it. Its ONNX graph uses a handful of ops (Conv,
dlib's affine layer as Mul+Add, Relu, Max/AveragePool, Pad, residual Add, GlobalAveragePool, Flatten, Gemm,
Softmax); :class:`OnnxGraphModule` replays such a graph node by node with every initializer turned into a
trainable ``nn.Parameter`` (integer constants such as pad sizes stay buffers). No onnx2torch/torchvision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from stream.types import AGE_GROUPS

#: Age bins of the regression head's distribution (DLDL): whole years 0..100, so "80+" can be said.
AGE_BINS = 101
#: Node of the Cydral age graph whose output is the 256-d face feature (before its 81-way classifier).
CYDRAL_FEATURE_NODE = "layer_1_flatten"
CYDRAL_CLASSIFIER = ("layer_1_weights", "layer_1_bias")


def _attrs(node: object) -> dict[str, object]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}  # type: ignore[attr-defined]


class OnnxGraphModule(nn.Module):
    """Replays a simple ONNX graph in torch, up to an output node, with trainable initializers.

    Args:
        path: ONNX file.
        output: Name of the tensor to return (default: the graph's first output).

    Raises:
        ValueError: ``output`` is not produced by the graph, or the graph uses an unsupported op.
    """

    SUPPORTED = ("Conv", "Mul", "Add", "Relu", "MaxPool", "AveragePool", "Pad", "GlobalAveragePool", "Flatten",
                 "Gemm", "Softmax")

    def __init__(self, path: str | Path, output: str = "") -> None:
        super().__init__()
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(path))
        graph = model.graph
        self.input_name = graph.input[0].name
        self.output_name = output or graph.output[0].name
        self.params = nn.ParameterDict()
        self._const: dict[str, str] = {}  # ONNX name -> key in params or buffer name
        for index, init in enumerate(graph.initializer):
            array = numpy_helper.to_array(init)
            key = f"t{index}"
            if array.dtype.kind == "f":
                self.params[key] = nn.Parameter(torch.from_numpy(array.astype(np.float32).copy()))
            else:
                self.register_buffer(key, torch.from_numpy(array.astype(np.int64).copy()), persistent=True)
            self._const[init.name] = key
        self.nodes: list[tuple[str, list[str], str, dict[str, object]]] = []
        produced = {self.input_name}
        for node in graph.node:
            if node.op_type not in self.SUPPORTED:
                raise ValueError(f"path {str(path)!r}: unsupported ONNX op {node.op_type!r}; supported: "
                                 f"{', '.join(self.SUPPORTED)}")
            self.nodes.append((node.op_type, list(node.input), node.output[0], _attrs(node)))
            produced.add(node.output[0])
            if node.output[0] == self.output_name:
                break
        if self.output_name not in produced:
            raise ValueError(f"output {self.output_name!r} is not a tensor of {str(path)!r}")

    def constant(self, name: str) -> torch.Tensor:
        """The torch tensor (parameter or buffer) holding the ONNX initializer ``name``."""
        key = self._const[name]
        return self.params[key] if key in self.params else getattr(self, key)

    def _value(self, env: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        return env[name] if name in env else self.constant(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` float32 input, normalised as the ONNX model expects → the chosen output tensor."""
        env: dict[str, torch.Tensor] = {self.input_name: x}
        for op, inputs, output, attrs in self.nodes:
            args = [self._value(env, name) for name in inputs if name]
            env[output] = self._run(op, args, attrs)
        return env[self.output_name]

    @staticmethod
    def _run(op: str, args: list[torch.Tensor], attrs: dict[str, object]) -> torch.Tensor:
        if op == "Conv":
            pads = list(attrs.get("pads", [0, 0, 0, 0]))  # type: ignore[call-overload]
            if pads[:2] != pads[2:]:
                raise ValueError(f"Conv pads must be symmetric, got {pads}")
            return F.conv2d(args[0], args[1], args[2] if len(args) > 2 else None, stride=attrs.get("strides", 1),
                            padding=tuple(pads[:2]), dilation=attrs.get("dilations", 1), groups=attrs.get("group", 1))
        if op == "Mul":
            return args[0] * args[1]
        if op == "Add":
            return args[0] + args[1]
        if op == "Relu":
            return F.relu(args[0])
        if op in ("MaxPool", "AveragePool"):
            pads = list(attrs.get("pads", [0, 0, 0, 0]))  # type: ignore[call-overload]
            kwargs = {"kernel_size": attrs["kernel_shape"], "stride": attrs.get("strides", 1),
                      "padding": tuple(pads[:2]), "ceil_mode": bool(attrs.get("ceil_mode", 0))}
            if op == "MaxPool":
                return F.max_pool2d(args[0], **kwargs)
            return F.avg_pool2d(args[0], count_include_pad=bool(attrs.get("count_include_pad", 0)), **kwargs)
        if op == "Pad":
            pads = [int(p) for p in args[1].tolist()]
            rank = len(pads) // 2
            # ONNX: all begins then all ends, first axis first; F.pad: (last begin, last end, ...).
            torch_pads: list[int] = []
            for axis in reversed(range(rank)):
                torch_pads += [pads[axis], pads[axis + rank]]
            value = float(args[2]) if len(args) > 2 else 0.0
            return F.pad(args[0], torch_pads, mode="constant", value=value)
        if op == "GlobalAveragePool":
            return args[0].mean(dim=(2, 3), keepdim=True)
        if op == "Flatten":
            return torch.flatten(args[0], int(attrs.get("axis", 1)))  # type: ignore[call-overload]
        if op == "Gemm":
            a = args[0].t() if attrs.get("transA", 0) else args[0]
            b = args[1].t() if attrs.get("transB", 0) else args[1]
            out = float(attrs.get("alpha", 1.0)) * (a @ b)  # type: ignore[arg-type]
            return out + float(attrs.get("beta", 1.0)) * args[2] if len(args) > 2 else out  # type: ignore[arg-type]
        if op == "Softmax":
            return torch.softmax(args[0], dim=int(attrs.get("axis", -1)))  # type: ignore[call-overload]
        raise ValueError(f"unsupported ONNX op {op!r}")


class MultiHeadNet(nn.Module):
    """One feature extractor, three heads: 8 age groups, an age distribution over 0..100 years, gender.

    Input: ``(n, 3, S, S)`` float32 RGB chips normalised like the Cydral nets ((x - mean) / 256); any ``S``
    with the backbone's geometry (64, 80, 96 tested). Outputs (also the ONNX output names):
    ``group_logits (n, 8)``, ``age (n,)`` expected years under the 101-bin distribution, ``gender_logit (n,)``
    (sigmoid = P(female)); :meth:`forward_train` also returns the ``age_logits (n, 101)``.

    Args:
        backbone: Module mapping the input to ``(n, feature_dim)`` features.
        feature_dim: Width of the features.
        age_init: Optional ``(weights (feature_dim, 81), bias (81,))`` of a pretrained 0..80 age classifier,
            copied into the first 81 age bins (the rest start from bin 80), so training starts from
            Cydral's age estimate instead of from zero.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int = 256,
                 age_init: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(0.1)
        self.group_head = nn.Linear(feature_dim, len(AGE_GROUPS))
        self.age_head = nn.Linear(feature_dim, AGE_BINS)
        self.gender_head = nn.Sequential(nn.Linear(feature_dim, 128), nn.ReLU(inplace=True), nn.Linear(128, 1))
        self.register_buffer("bin_ages", torch.arange(AGE_BINS, dtype=torch.float32), persistent=False)
        if age_init is not None:
            weights, bias = age_init
            with torch.no_grad():
                n = weights.shape[1]
                self.age_head.weight[:n] = weights.t()
                self.age_head.bias[:n] = bias
                self.age_head.weight[n:] = weights.t()[-1]
                self.age_head.bias[n:] = bias[-1] - 2.0  # older bins start unlikely, training moves them

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """All head outputs, including the raw ``age_logits (n, 101)``."""
        features = self.dropout(self.backbone(x))
        age_logits = self.age_head(features)
        age = (torch.softmax(age_logits, dim=1) * self.bin_ages).sum(dim=1)
        return {
            "group_logits": self.group_head(features),
            "age": age,
            "gender_logit": self.gender_head(features).squeeze(1),
            "age_logits": age_logits,
        }

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``group_logits (n, 8)``, ``age (n,)``, ``gender_logit (n,)`` (the exported outputs)."""
        out = self.forward_train(x)
        return out["group_logits"], out["age"], out["gender_logit"]


def build_multihead_from_cydral(cydral_age_path: str | Path) -> MultiHeadNet:
    """A :class:`MultiHeadNet` whose backbone and age bins start from the Cydral age network."""
    graph = OnnxGraphModule(cydral_age_path, output=CYDRAL_FEATURE_NODE)
    full = OnnxGraphModule(cydral_age_path)
    weights, bias = (full.constant(name).detach().clone() for name in CYDRAL_CLASSIFIER)
    return MultiHeadNet(graph, feature_dim=int(weights.shape[0]), age_init=(weights, bias))
