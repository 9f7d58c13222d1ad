"""The temporal benchmark's clips (`nst-video bench temporal`): photographs moved in code, so that every frame's
true backward flow and the pixels that stay visible are known exactly, and the MPI-Sintel clip, judged with a
flow the product does not estimate (Farneback's, on the full-size frames; the product uses DIS).

Some clips are for tuning and the rest are held out: a setting is chosen on the tuned ones, and every figure is
also reported on the held-out ones, which no setting was chosen on (`Clip.tuned`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from . import media
from .flow import consistency
from .synthetic import moving_clip, texture
from .variants import CLIP_NAMES, TUNED

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
# The Sintel clip's licence is not stated where it came from, so it is read where it lies, never bundled.
SHARED_SAMPLES = Path(os.environ.get("NST_SHARED_SAMPLES", REPO.parent / "shared" / "samples"))


@dataclass
class Clip:
    """Frames (RGB uint8) with backward[t], the flow t -> t-1 (zeros at t = 0), and visible[t], True where frame
    t's pixel was visible in frame t-1 (False: revealed, or entered at an edge)."""

    name: str
    motion: str
    frames: list[np.ndarray]
    backward: list[np.ndarray]
    visible: list[np.ndarray]
    truth: str = "exact"            # or "farneback": estimated on the full-size input

    @property
    def tuned(self) -> bool:
        """Whether settings may be chosen on this clip (variants.TUNED); the others are held out."""
        return self.name in TUNED


def photo(name: str, fallback_seed: int = 0, size: tuple[int, int] = (480, 360)) -> np.ndarray:
    """A bundled sample photograph (RGB uint8); a made-up texture of `size` (W, H) where samples/ lacks it (an
    install without them), so benchmarks run anywhere."""
    path = SAMPLES / name
    return media.read_image(path) if path.exists() else texture(size[1], size[0], fallback_seed)


@dataclass
class Camera:
    """Where frame t looks in the background: frame pixel p shows background point
    centre + R(angle) (p - frame centre) / zoom."""

    centre: tuple[float, float]
    zoom: float = 1.0
    angle: float = 0.0              # degrees

    def matrix(self, width: int, height: int) -> np.ndarray:
        """2x3: frame pixel -> background point."""
        a = np.deg2rad(self.angle)
        rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) / self.zoom
        middle = np.array([(width - 1) / 2, (height - 1) / 2])
        return np.hstack([rotation, (np.array(self.centre) - rotation @ middle)[:, None]])


@dataclass
class Disc:
    """An opaque disc cut from another photograph, its top-left corner at whole-pixel `place(t)`."""

    patch: np.ndarray
    place: Callable[[int], tuple[int, int]]

    @property
    def radius(self) -> float:
        return self.patch.shape[0] / 2

    def mask(self, t: int, height: int, width: int) -> np.ndarray:
        """Frame t's pixels the disc covers (bool)."""
        x, y = self.place(t)
        ys, xs = np.mgrid[0:height, 0:width]
        r = self.radius
        return (ys - y - r + 0.5) ** 2 + (xs - x - r + 0.5) ** 2 <= r * r


def _within(x: np.ndarray, y: np.ndarray, width: int, height: int) -> np.ndarray:
    """Whether points (x, y) lie inside a frame of `width` x `height` (pixel centres 0 .. size - 1)."""
    return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def rendered_clip(name: str, motion: str, background: np.ndarray, cameras: list[Camera], size: tuple[int, int], *,
                  disc: Disc | None = None, gains: list[float] | None = None) -> Clip:
    """Frames of `size` (W, H) looking at `background` through each camera, the disc over them and the brightness
    multiplied by `gains`, with their exact backward flows and visibility."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    points = np.stack([xs, ys, np.ones_like(xs)], -1)                            # (H, W, 3)
    frames, flows, visibility = [], [], []
    for t, camera in enumerate(cameras):
        forward = camera.matrix(width, height)
        frame = cv2.warpAffine(background, forward, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT)
        covered = disc.mask(t, height, width) if disc else np.zeros((height, width), bool)
        if disc:
            x, y = disc.place(t)
            patch = np.zeros_like(frame)
            ph, pw = disc.patch.shape[:2]
            # the patch placed at (x, y), clipped to the frame
            x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + pw, width), min(y + ph, height)
            if x1 > x0 and y1 > y0:
                patch[y0:y1, x0:x1] = disc.patch[y0 - y:y1 - y, x0 - x:x1 - x]
            frame[covered] = patch[covered]
        if gains:
            frame = np.clip(frame.astype(np.float32) * gains[t], 0, 255).round().astype(np.uint8)
        flow = np.zeros((height, width, 2), np.float32)
        visible = np.ones((height, width), bool)
        if t > 0:
            earlier = np.vstack([cameras[t - 1].matrix(width, height), [0, 0, 1]])
            to_earlier = np.linalg.inv(earlier) @ np.vstack([forward, [0, 0, 1]])   # frame t pixel -> frame t-1
            moved = points @ to_earlier[:2].T
            flow[:] = moved - points[..., :2]
            inside = _within(moved[..., 0], moved[..., 1], width, height)
            visible = inside
            if disc:
                (x, y), (px, py) = disc.place(t), disc.place(t - 1)
                r = disc.radius
                hidden = (moved[..., 1] - py - r + 0.5) ** 2 + (moved[..., 0] - px - r + 0.5) ** 2 <= (r + 1) ** 2
                visible = inside & ~hidden                                        # behind the disc at t-1
                flow[covered] = (px - x, py - y)                                  # the disc moves as a whole
                target_x, target_y = xs[covered] + px - x, ys[covered] + py - y
                visible[covered] = _within(target_x, target_y, width, height)
        frames.append(frame)
        flows.append(flow)
        visibility.append(visible)
    return Clip(name, motion, frames, flows, visibility)


def _disc(image: np.ndarray, diameter: int, place: Callable[[int], tuple[int, int]]) -> Disc:
    """A disc of `diameter` px cut from the middle of `image`."""
    side = min(image.shape[:2])
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    patch = cv2.resize(image[top:top + side, left:left + side], (diameter, diameter), interpolation=cv2.INTER_AREA)
    return Disc(patch, place)


def _background(image: np.ndarray, width: int) -> np.ndarray:
    """The photograph at a size where one frame (`width` px) spans about 60% of its width."""
    scale = width / 0.6 / image.shape[1]
    return cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)


def flicker_clip(frames: int = 12, width: int = 160) -> Clip:
    """`bench flicker`'s clip as it was: a pan of 2 px a frame across tubingen.png, a textured square crossing at
    3 px a frame the other way (synthetic.moving_clip). Tuned on."""
    height = round(width * 0.6) // 2 * 2
    background = photo("tubingen.png", 11)
    made = moving_clip(frames, width, height, pan=2, object_speed=3, object_size=max(12, height // 3),
                       background=background)
    return Clip("flicker", "pan 2 px, textured square 3 px the other way", made.frames, made.backward,
                made.visible)


def zoom_clip(frames: int = 16, width: int = 96) -> Clip:
    """A slow zoom into tubingen.png, 1.0 to 1.3 over the clip: sub-pixel motion everywhere. Tuned on."""
    height = round(width * 2 / 3) // 2 * 2
    background = _background(photo("tubingen.png", 11), width)
    centre = (background.shape[1] / 2, background.shape[0] / 2)
    cameras = [Camera(centre, 1.0 + 0.3 * t / max(1, frames - 1)) for t in range(frames)]
    return rendered_clip("zoom", "zoom in 1.0 to 1.3", background, cameras, (width, height))


def occluder_clip(frames: int = 16, width: int = 96) -> Clip:
    """A pan of 2 px a frame across astronaut.png with a disc cut from chelsea.png crossing at 3 px a frame the
    other way: revealed background behind a moving object. Held out."""
    height = round(width * 2 / 3) // 2 * 2
    background = _background(photo("astronaut.png", 12), width)
    start = (width / 2 + 2, background.shape[0] / 2)
    cameras = [Camera((start[0] + 2 * t, start[1])) for t in range(frames)]
    diameter = height // 2
    disc = _disc(photo("chelsea.png", 13), diameter, lambda t: (width - diameter - 2 - 3 * t, height // 4))
    return rendered_clip("occluder", "pan 2 px, a disc 3 px the other way", background, cameras, (width, height),
                         disc=disc)


def rotation_clip(frames: int = 16, width: int = 96) -> Clip:
    """chelsea.png turning 1.5 degrees a frame about the frame's centre: the corners are revealed. Held out."""
    height = round(width * 2 / 3) // 2 * 2
    background = _background(photo("chelsea.png", 13), width)
    centre = (background.shape[1] / 2, background.shape[0] / 2)
    cameras = [Camera(centre, 1.1, 1.5 * t) for t in range(frames)]
    return rendered_clip("rotation", "rotation 1.5 degrees", background, cameras, (width, height))


def light_clip(frames: int = 16, width: int = 96) -> Clip:
    """A pan of 1 px a frame across astronaut.png while the light dims to 0.55 and comes back. Held out."""
    height = round(width * 2 / 3) // 2 * 2
    background = _background(photo("astronaut.png", 12), width)
    start = (width / 2 + 1, background.shape[0] * 0.45)
    cameras = [Camera((start[0] + t, start[1])) for t in range(frames)]
    gains = [1 - 0.45 * np.sin(np.pi * t / max(1, frames - 1)) for t in range(frames)]
    return rendered_clip("light", "pan 1 px, light 1.0 to 0.55 and back", background, cameras, (width, height),
                         gains=gains)


def long_clip(frames: int = 96, width: int = 96) -> Clip:
    """A long shot over chelsea.png: a pan of 0.7 px a frame, a zoom from 1.0 to 1.25, and a disc cut from
    astronaut.png crossing on an arc. Held out."""
    height = round(width * 2 / 3) // 2 * 2
    background = _background(photo("chelsea.png", 13), width)
    start = (width * 0.55, background.shape[0] / 2)
    cameras = [Camera((start[0] + 0.7 * t, start[1]), 1.0 + 0.25 * t / max(1, frames - 1)) for t in range(frames)]
    diameter = height * 2 // 5

    def place(t: int) -> tuple[int, int]:
        progress = t / max(1, frames - 1)
        return (round(-diameter + progress * (width + diameter)),
                round(height / 2 - diameter / 2 + 0.15 * height * np.sin(progress * np.pi)))
    disc = _disc(photo("astronaut.png", 12), diameter, place)
    return rendered_clip("long", "pan 0.7 px, zoom 1.0 to 1.25, a disc on an arc", background, cameras,
                         (width, height), disc=disc)


def sintel_clip(frames: int = 16, width: int = 128, path: Path | None = None) -> Clip | None:
    """The first frames of MPI-Sintel's clip (`../shared/samples/sintel_clip.mp4`), with Farneback's flow estimated
    both ways on the full-size frames and shrunk, and visibility by the round trip of the two (no photometric test).
    None where the file is absent. Held out."""
    path = path or SHARED_SAMPLES / "sintel_clip.mp4"
    capture = cv2.VideoCapture(str(path))
    full = []
    while len(full) < frames:
        ok, frame = capture.read()
        if not ok:
            break
        full.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    if len(full) < 2:
        return None
    big_h, big_w = full[0].shape[:2]
    height = max(32, round(width * big_h / big_w) // 2 * 2)
    small = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in full]
    factor = np.float32([width / big_w, height / big_h])

    def farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        flow = cv2.calcOpticalFlowFarneback(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY),
                                            None, 0.5, 5, 21, 5, 7, 1.5, 0)
        return cv2.resize(flow, (width, height), interpolation=cv2.INTER_AREA) * factor
    flows, visibility = [np.zeros((height, width, 2), np.float32)], [np.ones((height, width), bool)]
    for t in range(1, len(full)):
        backward, forward = farneback(full[t], full[t - 1]), farneback(full[t - 1], full[t])
        flows.append(backward)
        visibility.append(consistency(backward, forward, boundary_rule=False, grow=0, blur=0) > 0.5)
    return Clip("sintel", "MPI-Sintel, frames 1-16 (flow: Farneback on 1024 px)", small, flows, visibility, truth="farneback")


CLIPS: dict[str, Callable[..., Clip | None]] = {
    "flicker": flicker_clip, "zoom": zoom_clip, "occluder": occluder_clip, "rotation": rotation_clip,
    "light": light_clip, "long": long_clip, "sintel": sintel_clip}
assert tuple(CLIPS) == CLIP_NAMES
