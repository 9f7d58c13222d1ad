"""How much memory one frame's optimisation needs, so a run that cannot fit is refused before it starts
(with the size that fits) instead of dying with an out-of-memory error at frame 1.

The estimate counts what autograd keeps for the backward pass of VGG19 up to the deepest layer used (one
float32 tensor per convolution and pooling output, int64 indices for max pooling, the padded input of blur
pooling's convolution, a separate ReLU output after a used convolution), the backward pass's transient
gradients (two of the largest activation), the image, its gradient and the targets, L-BFGS's history (two
image-sized vectors per step kept, up to its history size), plus a fixed cost paid once the first backward
pass has run.

Checked on the CPU against the growth of the process's peak resident set over one frame's optimisation
after the model and targets were loaded (random weights, relu layers, 2 threads): Adam 512x288 570 MiB
measured / 590 estimated, 1024x576 1409 / 1592, 1536x864 3043 / 3262; L-BFGS with a full history
(110 iterations) 512x288 1022 / 1010, 60 iterations at 768x432 1530 / 1572. Resident-set readings
vary by about 10% between runs. On a GPU, `nst-video bench` prints the estimate beside the CUDA peak.
Those readings are for average pooling. What blur pooling adds was counted with autograd's saved-tensor
hooks over the network's forward pass at 512x288: 69 MiB more kept than with average pooling (max
pooling: 34 MiB more), against 67 MiB (34) in the estimate before its overhead factor.
"""
from __future__ import annotations

from .config import VGG19_LAYERS, Config
from .optimise import Plan
from .vgg import channels, layer_index

LBFGS_HISTORY = 100
FIXED = 256 * 2**20     # paid once the first backward pass has run: kernels, convolution primitives and workspaces
OVERHEAD = 1.25          # allocator rounding and fragmentation, convolution workspaces, small buffers


def frame_bytes(height: int, width: int, cfg: Config, steps: int = LBFGS_HISTORY) -> int:
    """Bytes to optimise a (height, width) image; `steps`: L-BFGS iterations at this size (its history
    holds min(steps, LBFGS_HISTORY) pairs)."""
    used = set(cfg.content_layers) | set(cfg.style_layers)
    deepest = max(layer_index(name) for name in used)
    pixels = height * width
    saved, largest, scale = 0, 0, 1
    for index, name in enumerate(VGG19_LAYERS[: deepest + 1]):
        if name.startswith("pool"):
            scale *= 4
            out = channels(name) * pixels // scale
            # max pooling keeps int64 indices; blur pooling's convolution keeps its padded input (4x its output)
            saved += out * 4 + (out * 8 if cfg.pooling == "max" else out * 16 if cfg.pooling == "blur" else 0)
        elif name.startswith("conv"):
            out = channels(name) * pixels // scale
            saved += out * 4 * (2 if name in used else 1)     # a used conv output keeps its own ReLU copy
            largest = max(largest, out * 4)
    image = 3 * pixels * 4
    images = image * (4 + 2 * (1 + cfg.long_term))          # x, grad, content, init + temporal targets
    history = 2 * min(steps, LBFGS_HISTORY) * image + 2 * image if cfg.optimizer == "lbfgs" else 3 * image
    return int((saved + 2 * largest + images + history) * OVERHEAD) + FIXED


def peak_bytes(height: int, width: int, cfg: Config) -> int:
    """The largest scale decides (coarse scales are smaller): the most iterations any frame, the first
    or a later one, runs at full size."""

    steps = max(Plan.for_frame(cfg, (height, width), first=first).scales[-1][1] for first in (True, False))
    return frame_bytes(height, width, cfg, steps)


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
