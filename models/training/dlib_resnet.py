"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) read into torch.

The network (Davis King, CC0; 29 conv layers, 150x150 RGB chips → a 128-d face descriptor) is the strongest
face-pretrained network obtainable offline here (it ships inside the ``face_recognition_models`` package on
PyPI). ``models.training.train`` uses it as a teacher only: too slow for the per-face CPU budget (~0.4 GMAC a face).

dlib's file format is read by :mod:`export.dlib_dnn` (numpy only); the topology its layers encode is dlib's
``dnn_face_recognition_ex`` ResNet: a residual block is ``con affine relu con affine [avg_pool] add_prev relu`` and
adds its input (average-pooled 2x2 in a down-sampling block) zero-padded to the block's output size, as dlib's
``add_prev`` does.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

# dlib's file format is read by export.dlib_dnn (numpy only, so the runtime embedding's export needs no torch);
# Layer and read_layers are re-exported here for the training code and its tests.
from export.dlib_dnn import Layer, read_layers

__all__ = ["CHIP", "DESCRIPTOR_DIM", "PADDING", "DlibFaceDescriptor", "DlibTrunk", "Layer", "fold_affine",
           "read_layers"]

#: Chip side of dlib's ``input_rgb_image_sized<150>``; its normalisation (RGB, (x - mean) / 256, the same means as
#: the Cydral nets') is ``models.training.nets.to_input``.
CHIP = 150
#: dlib's ``get_face_chip_details`` padding for this net (0.25; the Cydral nets use 0.2).
PADDING = 0.25
DESCRIPTOR_DIM = 128

class _ConvAffine(nn.Module):
    """dlib ``con`` followed by ``affine`` (a frozen batch norm: per-channel scale and shift)."""

    def __init__(self, con: Layer, affine: Layer) -> None:
        super().__init__()
        filters, nr, nc, stride, _, pad, _ = con.ints[:7]
        assert con.params is not None and affine.params is not None
        weight_count = con.params.size - filters
        self.conv = nn.Conv2d(weight_count // (filters * nr * nc), filters, (nr, nc), stride, pad)
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(con.params[:weight_count].reshape(self.conv.weight.shape)))
            self.conv.bias.copy_(torch.from_numpy(con.params[weight_count:]))
        gamma, beta = np.split(affine.params, 2)
        self.register_buffer("gamma", torch.from_numpy(gamma.copy()).view(1, -1, 1, 1))
        self.register_buffer("beta", torch.from_numpy(beta.copy()).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.gamma + self.beta


def _add_padded(main: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: the sum over the larger of each dimension, the smaller tensor zero-padded at the end.

    The shapes are read as plain ints, so an export (at a fixed chip size) holds a bare ``Add`` where they agree
    and one constant ``Pad`` where they do not: no per-run shape arithmetic, and nothing to stop onnxruntime
    fusing the int8 graph (the pad arithmetic once cost more than a fifth of the net's CPU time).
    """
    main_shape = [int(d) for d in main.shape[1:]]
    skip_shape = [int(d) for d in skip.shape[1:]]
    if main_shape == skip_shape:
        return main + skip
    channels, height, width = (max(a, b) for a, b in zip(main_shape, skip_shape))

    def pad(t: torch.Tensor, shape: list[int]) -> torch.Tensor:
        if shape == [channels, height, width]:
            return t
        return F.pad(t, (0, width - shape[2], 0, height - shape[1], 0, channels - shape[0]))

    return pad(main, main_shape) + pad(skip, skip_shape)


class _Block(nn.Module):
    def __init__(self, first: _ConvAffine, second: _ConvAffine, pool: Layer | None) -> None:
        super().__init__()
        self.first, self.second = first, second
        self.pool = None if pool is None else (pool.ints[0], pool.ints[2], pool.ints[4])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.second(F.relu(self.first(x)))
        skip = x if self.pool is None else F.avg_pool2d(x, self.pool[0], self.pool[1], self.pool[2])
        return F.relu(_add_padded(out, skip))


class DlibFaceDescriptor(nn.Module):
    """dlib's face-recognition ResNet: ``(n, 3, 150, 150)`` chips (``models.training.nets.to_input``) → ``(n, 128)``.

    Args:
        path: ``dlib_face_recognition_resnet_model_v1.dat`` (or its bytes, or its layers as
            :func:`export.dlib_dnn.read_layers` gives them).

    Raises:
        ValueError: The file's layers are not the expected stem + residual blocks + fc.
    """

    def __init__(self, path: str | Path | bytes | list[Layer]) -> None:
        super().__init__()
        layers = path if isinstance(path, list) else read_layers(path)
        where = "dlib layers" if isinstance(path, (list, bytes)) else path
        kinds = [layer.kind for layer in layers]
        if kinds[:4] != ["con", "affine", "relu", "max_pool"]:
            raise ValueError(f"{where}: unexpected stem {kinds[:4]}")
        self.stem = _ConvAffine(layers[0], layers[1])
        stem_pool = layers[3].ints
        self.stem_pool = (stem_pool[0], stem_pool[2], stem_pool[4])
        blocks, i = [], 4
        while kinds[i] == "con":
            pool = layers[i + 5] if kinds[i + 5] == "avg_pool" else None
            end = i + 5 + (pool is not None)
            if kinds[i : i + 5] != ["con", "affine", "relu", "con", "affine"] or kinds[end : end + 2] != [
                    "add_prev", "relu"]:
                raise ValueError(f"{where}: unexpected residual block {kinds[i : end + 2]} at layer {i}")
            blocks.append(_Block(_ConvAffine(layers[i], layers[i + 1]), _ConvAffine(layers[i + 3], layers[i + 4]),
                                 pool))
            i = end + 2
        self.blocks = nn.Sequential(*blocks)
        if kinds[i:] != ["avg_pool", "fc"] or layers[i].ints[0] != 0:
            raise ValueError(f"{where}: unexpected head {kinds[i:]}")
        fc = layers[i + 1]
        outputs, inputs = fc.ints
        assert fc.params is not None
        self.register_buffer("fc", torch.from_numpy(fc.params.reshape(-1, outputs)[:inputs].copy()))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 256)`` globally averaged features of the last residual block (the descriptor's input)."""
        x = F.max_pool2d(F.relu(self.stem(x)), *self.stem_pool)
        return self.blocks(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled(x) @ self.fc


def fold_affine(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every dlib conv + affine pair folded into one ``nn.Conv2d`` (same function).

    For export: the graph then holds plain Conv → Relu/Add chains, which onnxruntime runs as fused float
    kernels and, quantized, keeps in int8 end to end (a float ``Mul``/``Add`` after each conv would force a
    dequantize/quantize pair and a layout change around it).
    """
    folded = copy.deepcopy(model).eval()
    for parent in list(folded.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, _ConvAffine):
                continue
            conv = child.conv
            gamma, beta = child.gamma.detach().view(-1), child.beta.detach().view(-1)
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)
            with torch.no_grad():
                fused.weight.copy_(conv.weight * gamma.view(-1, 1, 1, 1))
                fused.bias.copy_(conv.bias * gamma + beta)
            setattr(parent, name, fused)
    return folded


class DlibTrunk(nn.Module):
    """The network without its descriptor layer, as a trainable trunk: chips → ``(n, 256)`` pooled features.

    Its conv weights and affine (frozen batch-norm) scales and shifts all become trainable parameters. It is
    fully convolutional: 112x112 chips (~0.16 GMAC) keep it in the per-face CPU budget; sides below 112 leave
    no pixel for its last stride-2 convolution.
    """

    FEATURES = 256

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.net = DlibFaceDescriptor(path)
        for module in self.net.modules():
            if isinstance(module, _ConvAffine):
                gamma, beta = module.gamma, module.beta
                del module.gamma, module.beta
                module.gamma, module.beta = nn.Parameter(gamma), nn.Parameter(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.pooled(x)
