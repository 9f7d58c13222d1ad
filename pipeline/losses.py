"""Losses of Gatys et al. 2016 and Ruder et al. 2016 as pure functions, and an `Objective` that sets its
targets once (style Grams per run and size, content per frame, temporal per frame) and scores an image.

Images are (1, 3, H, W) float32 RGB in [0, 1]; features (1, C, H, W).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from . import vgg as vgg_module
from .config import Config, downsampling
from .runtime import configure, prepare_model
from .tensors import resize_image


class _Gram(torch.autograd.Function):
    """F F^T / M with a one-matmul backward. Autograd would differentiate the product through each of its
    two (identical) factors, two matmuls of (C, C) by (C, M) and an add; for the symmetric product the
    gradient is (dG + dG^T) F / M. Measured with `nst-video bench` on the CPU, the objective's time over a bare
    VGG19 forward and backward went from 1.119x to 1.087x at 256 px and from 1.237x to 1.123x at 512 px."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor) -> torch.Tensor:     # flat: (N, C, M)
        ctx.save_for_backward(flat)
        return torch.bmm(flat, flat.transpose(1, 2)) / flat.shape[-1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (flat,) = ctx.saved_tensors
        return torch.bmm(grad + grad.transpose(1, 2), flat) / flat.shape[-1]


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix divided by the number of positions M: G/M with G_ij = sum_k F_ik F_jk (Gatys 2016
    eq. 3). Dividing by M lets a style image of another size than the output give the target; for equal
    sizes `style_layer_loss` is exactly the paper's eq. 4."""
    n, c, h, w = features.shape
    return _Gram.apply(features.reshape(n, c, h * w))          # (N, C, C)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1/2 sum (F - P)^2 (Gatys 2016 eq. 1)."""
    return 0.5 * (features - target).pow(2).sum()


def style_layer_loss(gram_image: torch.Tensor, gram_target: torch.Tensor) -> torch.Tensor:
    """E_l = 1/(4 N^2 M^2) sum (G - A)^2 (Gatys 2016 eq. 4), written with the M-normalised Grams of
    `gram`: sum (G/M - A/M)^2 / (4 N^2)."""
    channels = gram_image.shape[-1]
    return (gram_image - gram_target).pow(2).sum() / (4 * channels**2)


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Squared total variation: sum of squared differences of neighbouring pixels (Mahendran & Vedaldi
    2015, beta = 2), which damps high-frequency noise."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return dx.pow(2).sum() + dy.pow(2).sum()


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, C, H, W) blurred by a separable Gaussian of `sigma` px (edges replicated)."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-offsets.pow(2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = image.shape[1]
    padded = F.pad(image, (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def temporal_loss(image: torch.Tensor, warped: torch.Tensor, weights: torch.Tensor, *, detail: float = 1.0,
                  sigma: float = 1.5) -> torch.Tensor:
    """(1/D) sum c (x - w)^2 with D = C*H*W (Ruder et al. 2016 eq. 7); `weights` is (1, 1, H, W) in [0, 1].

    With `detail` < 1 (a departure from the paper) the difference d = x - w counts as
    c (G*d)^2 + detail * c (d - G*d)^2, G a Gaussian of `sigma` px: what motion carries (structure, colour)
    is held, fine texture on the pixel grid is held only by `detail`, so it can be re-fitted to each frame."""
    difference = image - warped
    if detail == 1.0:
        return (weights * difference.pow(2)).sum() / image[0].numel()
    low = gaussian_blur(difference, sigma)
    return (weights * (low.pow(2) + detail * (difference - low).pow(2))).sum() / image[0].numel()


@dataclass
class TemporalTarget:
    """A previous result warped into this frame, and where it is reliable (Ruder's c, (1, 1, H, W))."""

    warped: torch.Tensor
    weights: torch.Tensor

    def resized(self, size: tuple[int, int]) -> "TemporalTarget":
        if tuple(self.warped.shape[-2:]) == tuple(size):
            return self
        return TemporalTarget(resize_image(self.warped, size),
                              F.interpolate(self.weights, size=size, mode="area"))


class Objective:
    """alpha * content + beta * style + tv * TV + gamma * temporal, with per-layer weights.

    `loss_scale="paper"` uses the paper's sums as they are. `"mean"` (the default) divides each term by
    its number of elements, as neural-style does, so the balance does not change with the image size:
    content per element is eq. 1 * 2/(N M), style per Gram entry of G/(N M) is eq. 4 * 4/N^2, TV per
    element is TV/(C H W). The temporal term is a mean in both (Ruder's eq. 7).
    """

    def __init__(self, model: "vgg_module.VGG19Features", content_layers: Mapping[str, float],
                 style_layers: Mapping[str, float], *, content_weight: float, style_weight: float,
                 tv_weight: float = 0.0, temporal_weight: float = 0.0, loss_scale: str = Config.loss_scale,
                 style_scale: float = Config.style_scale, temporal_detail: float = Config.temporal_detail,
                 temporal_sigma: float = Config.temporal_sigma):
        self.model = model
        self.content_layers = {k: v for k, v in content_layers.items() if v > 0}
        self.style_layers = {k: v for k, v in style_layers.items() if v > 0}
        self.content_weight, self.style_weight = content_weight, style_weight
        self.tv_weight, self.temporal_weight = tv_weight, temporal_weight
        self.temporal_detail, self.temporal_sigma = temporal_detail, temporal_sigma
        self.loss_scale = loss_scale
        self.style_scale = style_scale
        self.layers = tuple(sorted(set(self.content_layers) | set(self.style_layers), key=vgg_module.layer_index))
        self._style_images: list[torch.Tensor] = []
        self._blend: list[float] = []
        self._style_cache: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
        self.style_targets: dict[str, torch.Tensor] = {}
        self.content_targets: dict[str, torch.Tensor] = {}
        self.temporal: list[TemporalTarget] = []
        self.autocast_dtype: torch.dtype | None = None  # bf16 runs the network in autocast, losses in fp32

    @classmethod
    def from_config(cls, model: "vgg_module.VGG19Features", cfg: "Config") -> "Objective":
        """The objective a run optimises on `model`, every weight read from the one Config."""
        return cls(model, cfg.content_layers, cfg.style_layers, content_weight=cfg.content_weight,
                   style_weight=cfg.style_weight, tv_weight=cfg.tv_weight, temporal_weight=cfg.temporal_weight,
                   loss_scale=cfg.loss_scale, style_scale=cfg.style_scale, temporal_detail=cfg.temporal_detail,
                   temporal_sigma=cfg.temporal_sigma)

    def features(self, image: torch.Tensor, layers) -> dict[str, torch.Tensor]:
        with torch.autocast(image.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                            enabled=self.autocast_dtype is not None):
            features = self.model(image, layers)
        return {k: v.float() for k, v in features.items()}

    # -- targets ------------------------------------------------------------------------------------
    def set_style(self, images: Sequence[torch.Tensor], blend: Sequence[float] | None = None) -> None:
        """Style images (1, 3, h, w) at full resolution; `blend` weights are normalised to sum 1."""
        blend = list(blend) if blend is not None else [1.0] * len(images)
        total = sum(blend)
        self._style_images = list(images)
        self._blend = [b / total for b in blend]
        self._style_cache.clear()

    def prepare(self, size: tuple[int, int]) -> None:
        """Style Gram targets for an output of `size` (H, W): once per run and size, then cached. Each
        style image is scaled so its longest side is style_scale times the output's longest side; several
        styles blend as a weighted sum of Grams."""
        if size not in self._style_cache:
            targets: dict[str, torch.Tensor] = {}
            longest = max(size) * self.style_scale
            for image, weight in zip(self._style_images, self._blend):
                h, w = image.shape[-2:]
                factor = longest / max(h, w)
                floor = max((downsampling(layer) for layer in self.style_layers), default=1)  # VGG19's minimum
                scaled = resize_image(image, (max(floor, round(h * factor)), max(floor, round(w * factor))))
                with torch.no_grad():
                    features = self.features(scaled, self.style_layers)
                for layer in self.style_layers:
                    g = gram(features[layer]) * weight
                    targets[layer] = targets[layer] + g if layer in targets else g
            self._style_cache[size] = targets
        self.style_targets = self._style_cache[size]

    def set_content(self, image: torch.Tensor) -> None:
        """The content targets for this frame (at this scale)."""
        with torch.no_grad():
            features = self.features(image, self.content_layers) if self.content_layers else {}
        self.content_targets = {k: v.detach() for k, v in features.items()}
        self.prepare(tuple(image.shape[-2:]))

    def _style(self, features: Mapping[str, torch.Tensor], image: torch.Tensor, temporal_scale: float) -> torch.Tensor:
        """beta * sum_l w_l E_l (Gatys 2016 eq. 5) against the targets prepared for this size."""
        _, style_scale, _ = self._scales(features, image)
        style = image.new_zeros(())
        for layer, weight in self.style_layers.items():
            style = style + weight * style_scale[layer] * style_layer_loss(gram(features[layer]), self.style_targets[layer])
        return self.style_weight * style

    def set_temporal(self, targets: Sequence[TemporalTarget]) -> None:
        """Warped previous results and their weights, already at the size being optimised."""
        self.temporal = list(targets)

    # -- scoring ------------------------------------------------------------------------------------
    def _scales(self, features: Mapping[str, torch.Tensor], image: torch.Tensor) -> tuple[dict, dict, float]:
        if self.loss_scale == "paper":
            return ({k: 1.0 for k in self.content_layers}, {k: 1.0 for k in self.style_layers}, 1.0)
        content = {k: 2.0 / features[k][0].numel() for k in self.content_layers if k in features}
        style = {k: 4.0 / features[k].shape[1] ** 2 for k in self.style_layers if k in features}
        return content, style, 1.0 / image[0].numel()

    def _content(self, features: Mapping[str, torch.Tensor], image: torch.Tensor, temporal_scale: float) -> torch.Tensor:
        """alpha * sum_l w_l L_content,l (Gatys 2016 eq. 1) against this frame's targets."""
        content_scale, _, _ = self._scales(features, image)
        content = image.new_zeros(())
        for layer, weight in self.content_layers.items():
            content = content + weight * content_scale[layer] * content_loss(features[layer], self.content_targets[layer])
        return self.content_weight * content

    def _tv(self, features: Mapping[str, torch.Tensor], image: torch.Tensor, temporal_scale: float) -> torch.Tensor:
        _, _, tv_scale = self._scales(features, image)
        return self.tv_weight * tv_scale * tv_loss(image)

    def _temporal(self, features: Mapping[str, torch.Tensor], image: torch.Tensor, temporal_scale: float) -> torch.Tensor:
        """gamma * the temporal loss towards every target (Ruder 2016 eq. 7; low-pass unless temporal_detail)."""
        temporal = image.new_zeros(())
        for target in self.temporal:
            temporal = temporal + temporal_loss(image, target.warped, target.weights,
                                                detail=self.temporal_detail, sigma=self.temporal_sigma)
        return self.temporal_weight * temporal_scale * temporal

    # The objective's terms, in order: (name, its weighted score, whether it applies now). A new term is one
    # entry here, its score method (features, image, the evaluation's temporal_scale), and its weight in Config.
    TERMS: tuple[tuple[str, Callable, Callable], ...] = (
        ("content", _content, lambda self: True),
        ("style", _style, lambda self: True),
        ("tv", _tv, lambda self: bool(self.tv_weight)),
        ("temporal", _temporal, lambda self: bool(self.temporal_weight and self.temporal)),
    )

    def __call__(self, image: torch.Tensor, temporal_scale: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its parts (already weighted), all 0-dim tensors; no host synchronisation. The temporal
        term weighs temporal_weight x `temporal_scale` (a frame's relaxation, optimise.Plan.relax): the objective
        itself holds only the targets, so evaluating it never depends on how an earlier frame was optimised."""
        features = self.features(image, self.layers)
        parts = {name: score(self, features, image, temporal_scale) for name, score, applies in self.TERMS
                 if applies(self)}
        total = sum(parts.values())
        return total, parts


def build_network(cfg: Config, device: torch.device, extra_layers: Sequence[str] = ()) -> vgg_module.VGG19Features:
    """The one place a Config becomes a network (runs, eval, bench and the figures): VGG19 with cfg's weights
    and pooling, cut after the deepest of its layers and `extra_layers` (for objectives made later on the same
    network), laid out for `device`."""

    layers = dict.fromkeys([*cfg.content_layers, *cfg.style_layers, *extra_layers])
    return prepare_model(vgg_module.build_model(cfg.weights, list(layers), cfg.pooling, cfg.weights_format, device),
                         device)


def build_objective(cfg: Config, device: torch.device, *,
                    model: vgg_module.VGG19Features | None = None) -> Objective:
    """A run's objective from its Config: build_network's VGG19 (or `model`), run at cfg's precision. Style
    and content targets are set by the caller."""

    autocast = configure(device, cfg.precision)
    objective = Objective.from_config(prepare_model(model, device) if model else build_network(cfg, device), cfg)
    objective.autocast_dtype = autocast
    return objective
