"""How much memory one frame's optimisation needs, so a run that cannot fit is refused before it starts
(with the size that fits) instead of dying with an out-of-memory error at frame 1.

The estimate counts what autograd keeps for the backward pass of VGG19 up to the deepest layer used (one
float32 tensor per convolution and pooling output, int64 indices for max pooling), the backward pass's
transient gradients (two of the largest activation), the image, its gradient and the targets, and
L-BFGS's history (2 x history_size image-sized vectors). It is calibrated against measured peaks in
`nst-video bench` (see README).
"""
from __future__ import annotations

from .config import VGG19_LAYERS, Config
from .vgg import channels, layer_index

LBFGS_HISTORY = 100
OVERHEAD = 1.15          # allocator rounding, cuDNN workspaces, small buffers


def frame_bytes(height: int, width: int, cfg: Config) -> int:
    deepest = max(layer_index(name) for name in list(cfg.content_layers) + list(cfg.style_layers))
    pixels = height * width
    saved, largest, scale = 0, 0, 1
    for index, name in enumerate(VGG19_LAYERS[: deepest + 1]):
        if name.startswith("pool"):
            scale *= 4
            out = channels(name) * pixels // scale
            saved += out * 4 + (out * 8 if cfg.pooling == "max" else 0)
        elif name.startswith("conv"):
            out = channels(name) * pixels // scale
            saved += out * 4
            largest = max(largest, out * 4)
    image = 3 * pixels * 4
    images = image * (4 + 2 * (1 + cfg.long_term))          # x, grad, content, init + temporal targets
    history = 2 * LBFGS_HISTORY * image + 2 * image if cfg.optimizer == "lbfgs" else 3 * image
    return int((saved + 2 * largest + images + history) * OVERHEAD)


def peak_bytes(height: int, width: int, cfg: Config) -> int:
    """The largest scale decides (coarse scales are smaller)."""
    return frame_bytes(height, width, cfg)


def largest_fitting_size(height: int, width: int, cfg: Config, budget: int) -> int:
    """The largest longest side (multiple of 16) whose frame fits in `budget` bytes, same aspect ratio."""
    longest = max(height, width)
    best = 0
    for size in range(16, longest + 1, 16):
        h, w = round(height * size / longest), round(width * size / longest)
        if peak_bytes(h, w, cfg) <= budget:
            best = size
        else:
            break
    return best
