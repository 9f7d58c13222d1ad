"""Made-in-code inputs for tests and benchmarks: random VGG19 weights and a clip whose motion is known.

Random weights choose mechanics (iteration counts, flow settings, schedules), never loss weights: their
feature magnitudes are not those of trained weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .config import VGG19_LAYERS
from .media import write_image
from .vgg import CONV_INDICES, channels


# Loss weights for random-weights runs (tests, benchmarks). Random features have other magnitudes than
# trained ones (style ~1e-5 per Gram entry, content ~1 per element at noise), so the product's defaults would
# leave style inert; these make every term move so the mechanics are exercised. The temporal weight keeps
# the product's ratio to the content weight (2e4 / 5). Never use these as product defaults.
MECHANICS_WEIGHTS = {"content_weight": 1.0, "style_weight": 1e5, "tv_weight": 1.0, "temporal_weight": 4e3}


def random_vgg19_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    """A VGG19 `features` state dict with seeded random weights. He initialisation over the fan-in keeps
    activations at a similar scale through all 16 layers, as trained weights roughly do."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    in_channels = 3
    for index in CONV_INDICES:
        out_channels = channels(VGG19_LAYERS[index])
        std = (2.0 / (in_channels * 9)) ** 0.5
        state[f"{index}.weight"] = torch.randn(out_channels, in_channels, 3, 3, generator=generator) * std
        state[f"{index}.bias"] = torch.randn(out_channels, generator=generator) * 0.01
        in_channels = out_channels
    return state


def save_random_weights(path: str | Path, seed: int = 0, *, full_model: bool = False) -> Path:
    """Write random weights as torchvision writes VGG19: features only, or (full_model) with the
    `features.` prefix and a small stand-in classifier, as in a whole-model state dict."""
    state = random_vgg19_weights(seed)
    if full_model:
        state = {f"features.{k}": v for k, v in state.items()}
        state["classifier.0.weight"] = torch.zeros(4, 4)
        state["classifier.0.bias"] = torch.zeros(4)
    path = Path(path)
    torch.save(state, path)
    return path


def texture(height: int, width: int, seed: int = 0, octaves: int = 5) -> np.ndarray:
    """A photo-like RGB texture: smooth random noise summed over several scales (trackable by optical
    flow at every pixel), uint8."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.float32)
    for octave in range(octaves):
        cells = 2 ** (octave + 2)
        noise = rng.random((cells, max(2, cells * width // max(height, 1)), 3)).astype(np.float32)
        image += cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC) / (1.6 ** octave)
    image -= image.min()
    image /= max(float(image.max()), 1e-6)
    return (image * 255).round().astype(np.uint8)


@dataclass
class SyntheticClip:
    """Frames with exactly known motion. backward[t] is the true flow t -> t-1 (backward[0] is zero);
    visible[t] is True where the pixel of frame t was visible in frame t-1 (False: disoccluded or new)."""

    frames: list[np.ndarray]
    backward: list[np.ndarray]
    visible: list[np.ndarray]
    pan: int
    object_speed: int
    object_size: int


def moving_clip(frames: int = 8, width: int = 160, height: int = 96, *, pan: int = 2, object_speed: int = 3,
                object_size: int = 28, seed: int = 0, background: np.ndarray | None = None) -> SyntheticClip:
    """A camera window panning right across a photo by `pan` whole pixels per frame (the scene moves left),
    and a textured square moving right across the frame by `object_speed` pixels per frame."""
    margin = pan * frames + 1
    if background is None:
        background = texture(height, width + margin, seed)
    else:
        background = cv2.resize(background, (width + margin, height), interpolation=cv2.INTER_AREA)
    patch = texture(object_size, object_size, seed + 1, octaves=3)
    patch = 255 - patch  # distinct from the background
    top = (height - object_size) // 2
    out, flows, visibility = [], [], []
    for t in range(frames):
        frame = background[:, t * pan: t * pan + width].copy()
        left = 4 + t * object_speed
        frame[top:top + object_size, left:left + object_size] = patch[:, : max(0, min(object_size, width - left))]
        out.append(frame)
        flow = np.zeros((height, width, 2), np.float32)
        visible = np.ones((height, width), bool)
        if t > 0:
            flow[..., 0] = pan                       # background: frame_t(x) = frame_{t-1}(x + pan)
            visible[:, width - pan:] = False         # entered at the right edge
            prev_left = 4 + (t - 1) * object_speed
            # background pixels of frame t whose t-1 position was under the object are disoccluded
            xs = np.arange(width) + pan
            hidden_before = (xs >= prev_left) & (xs < prev_left + object_size)
            visible[top:top + object_size, hidden_before] = False
            flow[top:top + object_size, left:left + object_size, 0] = -object_speed  # the object itself
            visible[top:top + object_size, left:left + object_size] = True  # the object was all visible
        flows.append(flow)
        visibility.append(visible)
    return SyntheticClip(out, flows, visibility, pan, object_speed, object_size)


def write_frames(frames: list[np.ndarray], folder: str | Path) -> Path:
    """Frames as a folder of PNGs (frame_0.png, frame_1.png, ...)."""

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        write_image(folder / f"frame_{index}.png", frame)
    return folder


TUTORIAL_OBJECTIVE = {"content_layers": {"conv4_2": 1.0},
                      "style_layers": {f"conv{i}_1": 0.2 for i in range(1, 6)},
                      "pooling": "max", "content_weight": 1.0, "style_weight": 1e6, "tv_weight": 0.0}
"""The PyTorch tutorial's objective: on random weights it keeps the content while stylising (the product's
default objective washes out to flat colour there), so benchmarks of quality over time use it."""


def drift_clip(frames: int = 100, width: int = 96, height: int = 64, *, background: np.ndarray | None = None,
               seed: int = 0) -> list[np.ndarray]:
    """A long shot with every kind of motion a later frame must cope with: the camera pans right (0.7 px a
    frame, so new content enters at the right edge) while slowly zooming in (1.0 to 1.25 over the clip:
    sub-pixel, resampled motion everywhere), and a textured disc crosses the frame on a gentle arc,
    covering and revealing the background behind it."""
    bg_width, bg_height = width * 3, height * 2
    if background is None:
        background = texture(bg_height, bg_width, seed)
    else:
        background = cv2.resize(background, (bg_width, bg_height), interpolation=cv2.INTER_AREA)
    radius = max(4, height // 5)
    disc = 255 - texture(2 * radius, 2 * radius, seed + 1, octaves=3)
    yy, xx = np.mgrid[0:2 * radius, 0:2 * radius]
    inside = (yy - radius + 0.5) ** 2 + (xx - radius + 0.5) ** 2 <= radius ** 2
    out = []
    for t in range(frames):
        progress = t / max(1, frames - 1)
        scale = 1.0 + 0.25 * progress
        centre_x, centre_y = width * 0.8 + 0.7 * t, bg_height / 2
        # frame pixel (x, y) shows background at centre + (p - frame centre) / scale
        matrix = np.float32([[1 / scale, 0, centre_x - width / 2 / scale],
                             [0, 1 / scale, centre_y - height / 2 / scale]])
        frame = cv2.warpAffine(background, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT)
        left = int(round(-radius + progress * (width + radius)))
        top = int(round(height / 2 - radius + 0.15 * height * np.sin(progress * np.pi)))
        for y in range(2 * radius):
            for x in range(2 * radius):
                fy, fx = top + y, left + x
                if inside[y, x] and 0 <= fy < height and 0 <= fx < width:
                    frame[fy, fx] = disc[y, x]
        out.append(frame)
    return out
