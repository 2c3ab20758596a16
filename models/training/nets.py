"""Torch definitions: an ONNX→torch loader for small conv graphs, and the project's multi-head age/gender net.

Also the nets' conventions that training and the descriptor teacher share: the input (:func:`to_input`) and
the age-distribution target (:func:`age_targets`).

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

from stream.runtime import denormal_mask
from stream.types import AGE_GROUPS, age_group_index

#: Age bins of the regression head's distribution (DLDL): whole years 0..100, so "80+" can be said.
AGE_BINS = 101
#: Node of the Cydral age graph whose output is the 256-d face feature (before its 81-way classifier).
CYDRAL_FEATURE_NODE = "layer_1_flatten"
CYDRAL_CLASSIFIER = ("layer_1_weights", "layer_1_bias")
#: Node of the Cydral gender graph with its 4096-d conv features (64 x 8 x 8, before its 16-unit hidden layer).
CYDRAL_GENDER_FEATURE_NODE = "layer_4_flatten"
#: Its classifier: hidden Gemm, the scalar after the ReLU, the output Gemm ([female, male]).
CYDRAL_GENDER_CLASSIFIER = ("layer_4_weights", "layer_4_bias", "layer_2_scalar", "layer_1_weights", "layer_1_bias")
#: Chip side the Cydral gender network was trained on.
GENDER_CHIP = 32
#: Normalisation of the Cydral nets (RGB order, 0-255 scale), kept so the pretrained filters still fit; dlib's
#: face-recognition ResNet (``models.training.dlib_resnet``) uses the same.
MEAN_RGB = (122.782, 117.001, 104.298)
STD_RGB = (256.0, 256.0, 256.0)


def to_input(chips: torch.Tensor) -> torch.Tensor:
    """``(n, S, S, 3)`` uint8 BGR chips → ``(n, 3, S, S)`` float32 RGB, (x - mean) / 256: every net's input."""
    x = chips.flip(-1).permute(0, 3, 1, 2).float()
    mean = torch.tensor(MEAN_RGB, dtype=torch.float32, device=chips.device).view(1, 3, 1, 1)
    return (x - mean) / STD_RGB[0]


def age_targets(age: torch.Tensor, sigma: float) -> torch.Tensor:
    """``(n, AGE_BINS)`` Gaussian label distributions over the age bins (DLDL), wider for older faces.

    The target of every age-distribution head: the net's (``models.training.train``) and the descriptor
    teacher's (``models.training.descriptor_teacher``).
    """
    bins = torch.arange(AGE_BINS, dtype=torch.float32, device=age.device)
    width = sigma + 0.03 * age.float().view(-1, 1)
    dist = torch.exp(-0.5 * ((bins.view(1, -1) - age.float().view(-1, 1)) / width) ** 2)
    return dist / dist.sum(dim=1, keepdim=True)


def zero_denormals_(module: nn.Module) -> int:
    """Set every denormal float32 parameter and buffer entry of ``module`` to zero; returns how many there were."""
    count = 0
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.dtype != torch.float32:
                continue
            mask = denormal_mask(tensor.detach().cpu().numpy())
            if mask.any():
                count += int(mask.sum())
                tensor.masked_fill_(torch.from_numpy(mask).to(tensor.device), 0.0)
    return count


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
                # Denormal weights (the Cydral age net has thousands) hit the x86 slow path in torch and in
                # onnxruntime, and an export would carry them on; zero them (a change below float32 rounding).
                weights = array.astype(np.float32).copy()
                weights[denormal_mask(weights)] = 0.0
                self.params[key] = nn.Parameter(torch.from_numpy(weights))
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
    """One or two face-pretrained trunks, three heads: 8 age groups, an age distribution over 0..100 years, gender.

    Input: ``(n, 3, S, S)`` float32 RGB chips normalised like the Cydral and dlib nets ((x - mean) / 256): with
    the Cydral trunks, ``dlib_chip`` alignment and ``S`` a multiple of 32 (64 as pretrained; the age trunk is
    fully convolutional, so larger chips give it finer detail); with the dlib trunk, ``dlib_chip_025`` and 112.
    The Cydral age trunk reads the chip (256-d features); the Cydral gender trunk reads it average-pooled to
    32x32, as its training chips were (4096-d conv features); without a gender trunk (``gender_trunk=None``, the
    dlib backbone) every head reads the age trunk's features alone. Both trunks and all heads train
    (``models.training.train`` gives the trunks a lower learning rate); ``freeze_age_trunk`` keeps the age trunk fixed
    instead (its features can then be computed once and cached). With the Cydral trunks the heads start from the
    Cydral classifiers, so training begins at Cydral's estimates: the age distribution's first 81 bins copy
    Cydral's 0..80 classifier (the rest start from bin 80, unlikely), and the gender logit starts as Cydral's
    female-minus-male logit.

    Outputs (also the ONNX output names): ``group_logits (n, 8)``, ``age (n,)`` expected years under the 101-bin
    distribution (so "80+" is reachable), ``gender_logit (n,)`` (sigmoid = P(female)).

    Args:
        age_trunk: Module mapping the chip to ``(n, 256)`` features.
        gender_trunk: Module mapping the pooled chip to ``(n, gender_dim)`` features.
        age_dim: Width of the age features.
        gender_dim: Width of the gender trunk features.
        age_init: ``(weights (age_dim, 81), bias (81,))`` of the pretrained age classifier, or None.
        gender_init: ``(hidden_w (gender_dim, 16), hidden_b (16,), scalar, out_w (16, 2), out_b (2,))`` of the
            pretrained gender classifier (outputs ``[female, male]``), or None.
        freeze_age_trunk: Keep the age trunk's weights fixed (True) or fine-tune it with the rest (False).

    Attributes:
        group_mix: Inference-time blend of the two age views in ``group_logits``: 0 gives the group head alone
            (trained with class weights, so it favours rare groups); ``m > 0`` gives
            ``log((1 - m) * softmax(group_head) + m * P(group | age distribution))``, log-probabilities, which the
            runtime's softmax returns unchanged. Not a trained weight; set before export.
    """

    def __init__(self, age_trunk: nn.Module, gender_trunk: nn.Module | None, age_dim: int = 256,
                 gender_dim: int = 4096,
                 age_init: tuple[torch.Tensor, torch.Tensor] | None = None,
                 gender_init: tuple[torch.Tensor, ...] | None = None, freeze_age_trunk: bool = True) -> None:
        super().__init__()
        self.age_trunk = age_trunk
        self.gender_trunk = gender_trunk
        for parameter in self.age_trunk.parameters():
            parameter.requires_grad_(not freeze_age_trunk)
        # Without a gender trunk every head reads the age trunk's features alone.
        hidden = 64 if gender_trunk is not None else 0
        self.gender_hidden = nn.Linear(gender_dim, hidden) if gender_trunk is not None else None
        joint = age_dim + hidden
        self.dropout = nn.Dropout(0.2)
        self.group_head = nn.Sequential(nn.Linear(joint, 128), nn.ReLU(inplace=True), nn.Dropout(0.2),
                                        nn.Linear(128, len(AGE_GROUPS)))
        self.age_head = nn.Linear(joint, AGE_BINS)
        # A residual MLP on the age logits (last layer zero: training starts at the linear head's estimate).
        self.age_residual = nn.Sequential(nn.Linear(joint, 128), nn.ReLU(inplace=True), nn.Linear(128, AGE_BINS))
        self.gender_head = nn.Linear(joint, 1)
        self.register_buffer("bin_ages", torch.arange(AGE_BINS, dtype=torch.float32), persistent=False)
        bin_groups = torch.from_numpy(age_group_index(np.arange(AGE_BINS)))
        self.register_buffer("bin_to_group", F.one_hot(bin_groups, len(AGE_GROUPS)).float(), persistent=False)
        self.group_mix = 0.0
        with torch.no_grad():
            nn.init.zeros_(self.age_residual[2].weight)
            nn.init.zeros_(self.age_residual[2].bias)
            self.age_head.weight.zero_()
            self.gender_head.weight.zero_()
            self.gender_head.bias.zero_()
            if age_init is not None:
                weights, bias = age_init
                n = weights.shape[1]
                self.age_head.weight[:n, :age_dim] = weights.t()
                self.age_head.bias[:n] = bias
                self.age_head.weight[n:, :age_dim] = weights.t()[-1]
                self.age_head.bias[n:] = bias[-1] - 2.0  # older bins start unlikely; training moves them
            if gender_init is not None and self.gender_hidden is not None:
                hidden_w, hidden_b, scalar, out_w, out_b = gender_init
                k = hidden_w.shape[1]
                self.gender_hidden.weight[:k] = hidden_w.t()
                self.gender_hidden.bias[:k] = hidden_b
                # Cydral: logits = (relu(h) * scalar) @ out_w + out_b, [female, male].
                self.gender_head.weight[0, age_dim : age_dim + k] = scalar * (out_w[:, 0] - out_w[:, 1])
                self.gender_head.bias[0] = out_b[0] - out_b[1]

    def age_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 256)`` features of the age trunk."""
        return self.age_trunk(x)

    def gender_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 4096)`` features of the gender trunk (trained on 32x32 chips: any chip size is pooled to that)."""
        assert self.gender_trunk is not None
        return self.gender_trunk(F.avg_pool2d(x, x.shape[-1] // GENDER_CHIP))

    def forward_train(self, x: torch.Tensor, age_features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """All head outputs, including the raw ``age_logits (n, 101)``.

        Args:
            x: ``(n, 3, S, S)`` normalised chips.
            age_features: Precomputed ``(n, 256)`` age-trunk features of the same chips (skips the trunk).
        """
        age_feat = self.age_features(x) if age_features is None else age_features
        if self.gender_hidden is None:
            joint = age_feat
        else:
            hidden = F.relu(self.gender_hidden(self.dropout(self.gender_features(x))))
            joint = torch.cat([age_feat, hidden], dim=1)
        dropped = self.dropout(joint)
        age_logits = self.age_head(dropped) + self.age_residual(dropped)
        age_probs = torch.softmax(age_logits, dim=1)
        age = (age_probs * self.bin_ages).sum(dim=1)
        group_logits = self.group_head(dropped)
        if self.group_mix > 0:
            mixed = (1 - self.group_mix) * torch.softmax(group_logits, dim=1) + self.group_mix * (
                age_probs @ self.bin_to_group)
            group_logits = torch.log(mixed.clamp_min(1e-12))
        return {
            "group_logits": group_logits,
            "age": age,
            "gender_logit": self.gender_head(dropped).squeeze(1),
            "age_logits": age_logits,
        }

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``group_logits (n, 8)``, ``age (n,)``, ``gender_logit (n,)`` (the exported outputs)."""
        out = self.forward_train(x)
        return out["group_logits"], out["age"], out["gender_logit"]


def build_multihead_from_cydral(cydral_age_path: str | Path, cydral_gender_path: str | Path,
                                freeze_age_trunk: bool = True) -> MultiHeadNet:
    """A :class:`MultiHeadNet` whose trunks and heads start from the Cydral age and gender networks."""
    age_trunk = OnnxGraphModule(cydral_age_path, output=CYDRAL_FEATURE_NODE)
    age_full = OnnxGraphModule(cydral_age_path)
    weights, bias = (age_full.constant(name).detach().clone() for name in CYDRAL_CLASSIFIER)
    gender_trunk = OnnxGraphModule(cydral_gender_path, output=CYDRAL_GENDER_FEATURE_NODE)
    gender_full = OnnxGraphModule(cydral_gender_path)
    gender_init = tuple(gender_full.constant(name).detach().clone().reshape(-1) if name.endswith("scalar")
                        else gender_full.constant(name).detach().clone() for name in CYDRAL_GENDER_CLASSIFIER)
    gender_init = (*gender_init[:2], float(gender_init[2][0]), *gender_init[3:])
    return MultiHeadNet(age_trunk, gender_trunk, age_dim=int(weights.shape[0]),
                        gender_dim=int(gender_init[0].shape[0]), age_init=(weights, bias),
                        gender_init=gender_init, freeze_age_trunk=freeze_age_trunk)  # type: ignore[arg-type]


def build_multihead_from_dlib(dlib_path: str | Path) -> MultiHeadNet:
    """A :class:`MultiHeadNet` on dlib's face-recognition ResNet (``models.training.dlib_resnet.DlibTrunk``), no gender
    trunk; its heads start untrained (the trunk was trained for identity, not age or gender)."""
    from models.training.dlib_resnet import DlibTrunk

    return MultiHeadNet(DlibTrunk(dlib_path), None, age_dim=DlibTrunk.FEATURES, freeze_age_trunk=False)


class FlipAverage(nn.Module):
    """Horizontal-flip test-time augmentation for export: one pass over ``[x; flip(x)]`` (batch 2n), averaged.

    Averages the two passes' group probabilities (returned as log-probabilities, which the runtime's softmax
    returns unchanged), ages (the mean of the two expectations is the expectation of the averaged distribution)
    and P(female) (returned as its logit). Doubles the per-face cost.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        group_logits, age, gender_logit = self.net(torch.cat([x, x.flip(3)], dim=0))
        probs = torch.softmax(group_logits, dim=1)
        group = torch.log(((probs[:n] + probs[n:]) * 0.5).clamp_min(1e-12))
        p_female = ((torch.sigmoid(gender_logit[:n]) + torch.sigmoid(gender_logit[n:])) * 0.5).clamp(1e-7, 1 - 1e-7)
        return group, (age[:n] + age[n:]) * 0.5, torch.log(p_female) - torch.log1p(-p_female)
