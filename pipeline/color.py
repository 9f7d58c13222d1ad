"""Luminance-only transfer (Gatys, Bethge, Hertzmann, Shechtman 2016, "Preserving colour in neural
artistic style transfer"): style the luminance channel, keep the content's colour channels (YIQ)."""
from __future__ import annotations

import torch

_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                            [0.596, -0.274, -0.322],
                            [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def _apply(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", matrix.to(image), image)   # (N, 3, H, W)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) Y."""
    return _apply(_RGB_TO_YIQ, image)[:, :1]


def grey(image: torch.Tensor) -> torch.Tensor:
    """The image's luminance as a 3-channel grey image, which is what the optimiser sees."""
    return luminance(image).expand(-1, 3, -1, -1).contiguous()


def match_luminance(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The style's luminance as grey, shifted and scaled to the content's mean and spread (eq. 1 of the
    colour paper), so the transfer does not change the content's brightness."""
    style_y, content_y = luminance(style), luminance(content)
    matched = (style_y - style_y.mean()) * (content_y.std() / style_y.std().clamp_min(1e-6)) + content_y.mean()
    return matched.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def recombine(stylised: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The stylised luminance with the content's I and Q channels, back to RGB in [0, 1]."""
    yiq = _apply(_RGB_TO_YIQ, content)
    yiq = torch.cat([luminance(stylised), yiq[:, 1:]], dim=1)
    return _apply(_YIQ_TO_RGB, yiq).clamp(0, 1)
