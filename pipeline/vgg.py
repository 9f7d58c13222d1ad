"""A frozen VGG19 that returns features by layer name, cut after the deepest layer asked for.

Layer names follow the paper: conv1_1, relu1_1, conv1_2, relu1_2, pool1, ... relu5_4, pool5. Input is
(N, 3, H, W) float32 RGB in [0, 1]; the network's own preprocessing (ImageNet mean/std for torchvision
weights, BGR 0-255 minus the mean for Caffe-converted weights) happens inside `forward`.

Weights: torchvision's ImageNet VGG19 through its weights API (downloaded once, cached under TORCH_HOME),
or a state dict file the user names. Never random weights: without weights we say how to get them.
"""
from __future__ import annotations

import functools
import hashlib
import os
import pickle
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from .config import VGG19_LAYERS
from .errors import NSTError, WeightsError

# Output channels of the 16 convolutions of VGG19 ("M" is a pooling layer), torchvision's layout.
_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
CONV_INDICES = tuple(i for i, name in enumerate(VGG19_LAYERS) if name.startswith("conv"))
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def layer_index(name: str) -> int:
    try:
        return VGG19_LAYERS.index(name)
    except ValueError:
        raise NSTError(f"unknown layer {name!r}; valid layers: {', '.join(VGG19_LAYERS)}") from None


def channels(name: str) -> int:
    """Number of feature maps (N_l in the paper) at a layer."""
    index = layer_index(name)
    convs = [c for c in _PLAN if c != "M"]
    done = sum(1 for i in CONV_INDICES if i <= index)
    return convs[max(done, 1) - 1]


class BlurPool(nn.Module):
    """Anti-aliased average pooling (Zhang 2019, "Making Convolutional Networks Shift-Invariant Again"):
    the 2x2 box of average pooling widened by a binomial [1, 2, 1] low-pass before the stride-2
    subsampling, so a separable [1, 3, 3, 1] / 8 filter. Its taps are centred where average pooling's are
    and its output has the same size (edges reflected), so it can stand in for it in a trained network."""

    def __init__(self, channels: int):
        super().__init__()
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8
        self.register_buffer("kernel", (taps[:, None] * taps[None, :]).expand(channels, 1, 4, 4).contiguous())
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect" if min(x.shape[-2:]) > 1 else "replicate")
        return nn.functional.conv2d(x, self.kernel, stride=2, groups=self.channels)


class VGG19Features(nn.Module):
    """VGG19 `features` up to the deepest requested layer, frozen, returning a dict by layer name."""

    def __init__(self, state_dict: dict[str, torch.Tensor], layers: Iterable[str], pooling: str = "max",
                 weights_format: str = "torchvision"):
        super().__init__()
        self.layers = tuple(sorted(set(layers), key=layer_index))
        if not self.layers:
            raise NSTError("no layers requested")
        deepest = layer_index(self.layers[-1])
        self.names = VGG19_LAYERS[: deepest + 1]
        modules: list[nn.Module] = []
        in_channels = 3
        for index, name in enumerate(self.names):
            if name.startswith("conv"):
                out_channels = channels(name)
                conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
                conv.weight.data.copy_(state_dict[f"{index}.weight"])
                conv.bias.data.copy_(state_dict[f"{index}.bias"])
                modules.append(conv)
                in_channels = out_channels
            elif name.startswith("relu"):
                # In place, except where the convolution's own output is one we return.
                modules.append(nn.ReLU(inplace=VGG19_LAYERS[index - 1] not in self.layers))
            else:
                # Gatys et al. 2016 prefer average pooling; torchvision's weights were trained with max.
                modules.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2) if pooling == "avg"
                               else BlurPool(in_channels))
        self.body = nn.Sequential(*modules)
        self.weights_format = weights_format
        if weights_format == "caffe":
            mean, std = torch.tensor(_CAFFE_MEAN_BGR) / 255.0, torch.full((3,), 1 / 255.0)
        else:
            mean, std = torch.tensor(_IMAGENET_MEAN), torch.tensor(_IMAGENET_STD)
        self.register_buffer("mean", mean.view(1, 3, 1, 1))
        self.register_buffer("std", std.view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        if self.weights_format == "caffe":
            image = image.flip(1)  # RGB -> BGR
        return (image - self.mean) / self.std

    def forward(self, image: torch.Tensor, layers: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        wanted = set(self.layers if layers is None else layers)
        features: dict[str, torch.Tensor] = {}
        x = self.preprocess(image)
        for name, module in zip(self.names, self.body):
            x = module(x)
            if name in wanted:
                features[name] = x
                if len(features) == len(wanted):
                    break
        return features


# ---- weights ----------------------------------------------------------------------------------------

def _torchvision_weights():
    from torchvision.models import VGG19_Weights

    return VGG19_Weights.IMAGENET1K_V1


def cached_weights_path() -> Path:
    """Where torchvision keeps the ImageNet VGG19 weights ($TORCH_HOME/hub/checkpoints/...)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(_torchvision_weights().url)


def how_to_get_weights() -> str:
    return (f"the ImageNet VGG19 weights are not in {cached_weights_path()} and could not be downloaded: "
            "run `nst-video weights download` on a machine with internet and copy the file to that path "
            "(or set TORCH_HOME), or pass --weights FILE / set NST_WEIGHTS")


def download_weights(progress: bool = True) -> Path:
    """Fetch torchvision's ImageNet VGG19 weights into the cache (with a progress bar)."""
    try:
        _torchvision_weights().get_state_dict(progress=progress, check_hash=True)
    except Exception as exc:  # URLError, HTTPError, hash mismatch, disk full...
        raise WeightsError(f"downloading {_torchvision_weights().url} failed: {exc}") from None
    return cached_weights_path()


def _as_features_state(data: object, source: str) -> dict[str, torch.Tensor]:
    """Accept a full torchvision VGG19 state dict, a features-only one, or either wrapped in
    {"state_dict": ...} / with a "module." prefix; check every convolution's shape."""
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise WeightsError(f"{source} is not a VGG19 state dict (it holds a {type(data).__name__})")
    state: dict[str, torch.Tensor] = {}
    for key, value in data.items():
        key = key.removeprefix("module.")
        key = key.removeprefix("features.") if key.startswith("features.") else key
        if isinstance(value, torch.Tensor):
            state[key] = value
    in_channels = 3
    for index in CONV_INDICES:
        out_channels = channels(VGG19_LAYERS[index])
        weight, bias = state.get(f"{index}.weight"), state.get(f"{index}.bias")
        if weight is None or bias is None:
            raise WeightsError(f"{source} is not a VGG19 state dict: it has no weights for "
                               f"{VGG19_LAYERS[index]} (features.{index}.weight)")
        if tuple(weight.shape) != (out_channels, in_channels, 3, 3) or tuple(bias.shape) != (out_channels,):
            raise WeightsError(f"{source} is not a VGG19 state dict: {VGG19_LAYERS[index]} has shape "
                               f"{tuple(weight.shape)}, VGG19 needs {(out_channels, in_channels, 3, 3)}")
        if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
            raise WeightsError(f"{source} is damaged: the weights of {VGG19_LAYERS[index]} hold NaN or infinite "
                               "values")
        in_channels = out_channels
    return {k: v.float() for k, v in state.items() if k.split(".")[0].isdigit()}


def _check_weights_file(path: Path) -> None:
    if path.is_dir():
        raise WeightsError(f"weights file {path} is a folder; give the .pth file")
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")


def load_weights(path: str | Path | None = None, progress: bool = True) -> dict[str, torch.Tensor]:
    """VGG19 features weights from `path`, else torchvision's cache, else a download."""
    if path is not None:
        path = Path(path)
        _check_weights_file(path)
        if path.stat().st_size == 0:
            raise WeightsError(f"weights file {path} is empty (0 bytes)")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise WeightsError(f"{path} is not a VGG19 state dict: it is not a PyTorch file, or it holds objects "
                               "other than tensors, which nst-video does not load (only plain state dicts, "
                               "for safety)") from None
        except Exception as exc:
            raise WeightsError(f"{path} is not a VGG19 state dict ({type(exc).__name__}"
                               f"{': ' + _clip(str(exc)) if str(exc).strip() else ''})") from None
        return _as_features_state(data, str(path))
    cached = cached_weights_path()
    if not cached.exists():
        try:
            download_weights(progress=progress)
        except WeightsError:
            raise WeightsError(how_to_get_weights()) from None
    try:
        data = torch.load(cached, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"the cached weights {cached} are damaged ({type(exc).__name__}); delete the file "
                           "and run `nst-video weights download`") from None
    return _as_features_state(data, str(cached))


def _clip(text: str, limit: int = 100) -> str:
    """The first line of a message, cut at a word boundary."""
    line = text.strip().splitlines()[0]
    if len(line) <= limit:
        return line
    return line[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " ..."


def weights_identity(path: str | Path | None) -> str:
    """What identifies the weights for a job's hash: the file's SHA-256 (by content, not by path), or
    torchvision's release name."""
    if path is None:
        return f"torchvision:{_torchvision_weights().url}"
    _check_weights_file(Path(path))
    stat = os.stat(path)
    return _file_sha256(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """Hashed once per file version: a batch of many jobs with one weights file reads it once."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def build_model(weights: str | Path | None, layers: Iterable[str], pooling: str,
                weights_format: str = "torchvision", device: torch.device | str = "cpu",
                progress: bool = True) -> VGG19Features:
    """VGG19 cut after the deepest of `layers`; `pooling` has no default here: it is the Config's."""
    return VGG19Features(load_weights(weights, progress), layers, pooling, weights_format).to(device)


def weights_lines(weights: str | None) -> list[str]:
    """What `nst-video weights` says: the file named (checked), torchvision's cache, and which a run would use."""
    lines = []
    if weights:
        load_weights(weights)
        lines.append(f"--weights / NST_WEIGHTS: {weights} (a valid VGG19 state dict)")
    else:
        lines.append("--weights / NST_WEIGHTS: not set")
    cached = cached_weights_path()
    if cached.exists():
        lines.append(f"torchvision cache: {cached} (present, {cached.stat().st_size / 1e6:.0f} MB)")
    else:
        lines.append(f"torchvision cache: {cached} (missing: run `nst-video weights download`, "
                     "or copy the file there from a machine that has it)")
    in_use = weights or (str(cached) if cached.exists() else None)
    lines.append(f"in use: {in_use or 'none: a run would try to download them'}")
    return lines
