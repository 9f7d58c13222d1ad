"""The one configuration object of nst-video.

`Config` holds the only copy of each default. `load_config(name_or_path, **overrides)` reads a preset
from `configs/` (or any YAML file) strictly: unknown keys and wrong types are errors, and every value is
range-checked here, at the boundary, so the pipeline never sees a bad setting.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping

import yaml
from .errors import ConfigError

CONFIG_DIR = Path(os.environ.get("NST_CONFIG_DIR", Path(__file__).resolve().parent.parent / "configs"))

# Layer names of torchvision's VGG19 `features`, in order (see vgg.py).
VGG19_LAYERS: tuple[str, ...] = tuple(
    name
    for block, convs in enumerate((2, 2, 4, 4, 4), start=1)
    for name in [n for i in range(1, convs + 1) for n in (f"conv{block}_{i}", f"relu{block}_{i}")] + [f"pool{block}"]
)


def downsampling(layer: str) -> int:
    """How many times smaller than the input a layer's feature maps are (1, 2, 4, 8, 16 or 32): 2 to the
    number of 2x2 poolings before it."""
    index = VGG19_LAYERS.index(layer)
    return 2 ** sum(1 for name in VGG19_LAYERS[:index + 1] if name.startswith("pool"))


def _frozen_map(mapping: Mapping[str, float]) -> types.MappingProxyType:
    return types.MappingProxyType(dict(mapping))


def _field(default: Any, *, frames: bool = True, doc: str = "", flag: bool = False, metavar: str | None = None) -> Any:
    """A config field. `frames=False` marks settings that cannot change the stylised frames (output
    encoding, paths, verbosity): a resumed job may change them freely (see workdir.py). `flag` makes it an
    option of the main command and `batch` (--name-with-dashes, typed and documented from this field: see
    cli.config_flags), shown as `metavar` where its values are not obvious."""
    metadata = {"frames": frames, "doc": doc, "flag": flag, "metavar": metavar}
    if isinstance(default, Mapping):
        return field(default_factory=lambda: _frozen_map(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Config:
    # ---- image size and style -------------------------------------------------------------------
    size: int = _field(512, doc="longest side of the stylised frames, px", flag=True)
    style_scale: float = _field(1.0, doc="style image size relative to the stylised frame", flag=True)
    style_blend: tuple[float, ...] | None = _field(None, doc="weights of several style images (normalised to sum 1)", flag=True, metavar="W1,W2,..")
    original_colors: bool = _field(False, doc="luminance-only transfer, keeping the content's colours", flag=True)
    # ---- model ----------------------------------------------------------------------------------
    # frames=False: the weights are in a job's identity by content (their SHA-256), not by path.
    weights: str | None = _field(None, frames=False, doc="VGG19 state dict file; default: torchvision's ImageNet weights", flag=True, metavar="FILE")
    weights_format: str = _field("torchvision", doc="torchvision ([0,1] RGB, ImageNet mean/std) or caffe (BGR 0-255 minus mean)")
    # A fixed low-pass before each subsampling (Zhang 2019): the fit no longer hangs on the pixel grid.
    pooling: str = _field("blur", doc="VGG19's pooling: max, avg, or blur (average pooling anti-aliased, Zhang 2019)",
                          flag=True)
    # The paper's conv4_2 etc. are Caffe blobs after the in-place ReLU: torchvision's relu4_2.
    content_layers: Mapping[str, float] = _field({"relu4_2": 1.0}, doc="content layers and their weights")
    style_layers: Mapping[str, float] = _field(
        {"relu1_1": 0.2, "relu2_1": 0.2, "relu3_1": 0.2, "relu4_1": 0.2, "relu5_1": 0.2},
        doc="style layers and their weights w_l (Gatys 2016: 1/5 each)",
    )
    loss_scale: str = _field("mean", doc="mean (per-element, size-independent) or paper (Gatys 2016 eq. 1 and 4 sums)")
    # neural-style's weights (content 5, style 100, TV 1e-3 on 0-255 input) translated to [0,1] standardised input.
    content_weight: float = _field(5.0, doc="the content weight, alpha", flag=True)
    style_weight: float = _field(3.3e5, doc="the style weight, beta", flag=True)
    tv_weight: float = _field(5.1e3, doc="total variation weight (squared differences, Mahendran & Vedaldi)", flag=True)
    # artistic-videos' 1e3 on the 0-255 scale, translated the same way.
    temporal_weight: float = _field(2e4, doc="gamma, the temporal consistency weight (Ruder 2016 eq. 7)", flag=True)
    # Fine texture held to the previous frame's pixel grid pins a deficit that grows over a shot.
    temporal_detail: float = _field(0.0, doc="weight of the fine-detail (high-pass) part of the temporal loss relative to its low-pass part (1: Ruder's loss)")
    # Narrower held every frame of bench's clip short of the level at 160 px; wider let more flicker through.
    temporal_sigma: float = _field(1.5, doc="px, the Gaussian that splits the temporal loss into structure and detail")
    # ---- optimisation ---------------------------------------------------------------------------
    optimizer: str = _field("lbfgs", doc="the optimiser: lbfgs or adam", flag=True)
    lr: float | None = _field(None, doc="step size; default 1 for L-BFGS, 0.02 for Adam", flag=True)
    iterations: int = _field(500, doc="iterations (objective evaluations) for the first frame, all scales included", flag=True)
    # The warm start is near the answer: a cap, and most frames stop sooner at the cold level.
    frame_iterations: int = _field(60, doc="iteration cap for each later frame", flag=True)
    # Later frames are judged against cold quality and may run longer to reach it, relaxing the temporal weight.
    frame_extension: float = _field(2.0, doc="a later frame still worse than the cold level (see quality_slack) at frame_iterations keeps going up to this many times frame_iterations (1: never)")
    quality_slack: float = _field(1.10, doc="a later frame stops as soon as its content + style are within this factor of the cold level (0: no level; the plain tolerance stop)")
    # Off: holding each term apart bought content with stability and speed.
    term_slack: float = _field(0.0, doc="a later frame's stop also needs its content and its style each within this factor of the cold level's (0: judged on their sum only)")
    # Steps of 0.7 end nearer the weakest weight that reaches the level than halving: less flicker.
    temporal_relax: float = _field(0.7, doc="a later frame still worse than the cold level after relax_every iterations has its temporal weight multiplied by this (1: never relax)")
    relax_every: int = _field(20, doc="iterations between relaxations of the temporal weight of a frame worse than the cold level")
    # No floor: one held frames at their cap and cost quality (bench drift 2.34x of cold).
    temporal_floor: float = _field(0.0, doc="a later frame's temporal weight is never relaxed below this fraction of temporal_weight (0: no floor)")
    # A guard: a term this weak no longer holds the frame, so relaxing further is not carried on.
    relax_share: float = _field(0.005, doc="the next later frame's temporal weight never starts below the weight at which the term would have weighed this fraction of the last frame's content + style (0: no such limit)")
    # Restarting a missed frame's successor at full weight let quality drift where no frame reaches the level.
    carry_misses: bool = _field(True, doc="a later frame that ends at its cap short of the cold level passes its relaxing on: the next starts one step stronger than it ended (false: where it started, which holds the weight but lets quality drift where frames cannot reach the level)")
    # The cold level moves with the scene; a 40-iteration probe predicts it within 3%.
    probe_every: int = _field(10, doc="frames between probes of the cold level: a short cold optimisation of the frame (probe_iterations, not used in the output) rescales the level later frames are judged against (0: only at the shot's first frame and the cold references)")
    # A level gone stale between probes makes later frames miss it and relax for nothing.
    reprobe_after: int = _field(3, doc="a later frame that ends at its cap short of a cold level that a later frame reached since its probe, at least this many frames after that probe, has the next frame probed (0: only every probe_every frames)")
    probe_iterations: int = _field(40, doc="iterations of a probe of the cold level (see probe_every), at most `iterations`")
    # Coarse to fine in steps of sqrt(2): the first frame reaches single-scale L-BFGS's loss about 4x sooner.
    scales: tuple[float, ...] = _field((0.25, 0.354, 0.5, 0.707), doc="coarse sizes optimised before `size`, ascending: fractions of `size` (<= 1) or px (> 1); those below 32 px or not below `size` are skipped", flag=True, metavar="S1,S2,..")
    scale_iterations: tuple[int, ...] = _field((150, 100, 75, 75), doc="iterations at each coarse size (one per entry of `scales`); shrunk in proportion where they would take over 80% of the frame's budget", flag=True, metavar="N1,N2,..")
    frame_scales: bool = _field(False, doc="later video frames also run the coarse scales")
    min_scale: int = _field(128, doc="px: coarse scales smaller than this on the longest side are skipped (a 24 px scale fits nothing useful)")
    tolerance: float = _field(1e-3, doc="stop a scale when the loss improved by less than this fraction over `tolerance_window` iterations (0: off); iteration counts stay caps", flag=True)
    tolerance_window: int = _field(20, doc="iterations over which `tolerance` is measured")
    init: str = _field("content", doc="start of the first frame: content, noise, or the path of an image", flag=True, metavar="content|noise|IMAGE")
    seed: int = _field(0, doc="random seed (noise init); CPU runs are deterministic for a given seed", flag=True)
    device: str = _field("auto", frames=False, doc="the device: auto, cpu, cuda or cuda:N", flag=True, metavar="auto|cpu|cuda|cuda:N")
    # TF32 keeps 10 mantissa bits in the convolutions; fp32 is strict, bf16 (autocast) keeps the losses in fp32.
    precision: str = _field("auto", doc="numeric precision: auto (tf32 on CUDA from Ampere on, else fp32), fp32, tf32 or bf16", flag=True)
    # Not frames=False: a later frame's stop at the cold level is checked at these read-backs.
    log_every: int = _field(10, doc="iterations between loss read-backs (host syncs): progress, and where a later frame may stop at the cold level")
    # ---- video --------------------------------------------------------------------------------
    warm_start: bool = _field(True, doc="later frames start from the previous result (false: every frame cold, for comparison)")
    flow: bool = _field(True, doc="warp the previous result along optical flow (Ruder 2016); off: plain warm start", flag=True)
    flow_method: str = _field("dis", doc="dis or farneback (OpenCV)")
    dis_preset: str = _field("medium", doc="ultrafast, fast or medium (OpenCV DIS)")
    flow_scale: float = _field(2.0, doc="estimate flow on frames enlarged by this factor (capped at 2048 px)")
    photometric: float = _field(0.05, doc="also unreliable where the warped previous input differs by more than this (0-1; 0: off)")
    boundary_rule: bool = _field(False, doc="Ruder's motion-boundary test (off: on DIS flows it drops well-tracked pixels)")
    # Revealed pixels started from the warp repeat its border as streaks that later frames carry on.
    unreliable_init: str = _field("matched", doc="start of unreliable (disoccluded) pixels: warped (the warp everywhere, as in Ruder's paper), inpaint (the warped result filled in from reliable neighbours), matched (the content in the stylised palette), content, or noise")
    # A sub-pixel warp repeated frame after frame smears texture into streaks along the motion.
    start_warp: str = _field("nearest", doc="how the previous result is resampled to start a later frame: bilinear, bicubic or nearest (the temporal loss's target is always bilinear)")
    long_term: int = _field(0, doc="also keep consistency with frames t-2, t-4, ... t-2^K (Ruder 2016 long-term)", flag=True, metavar="K")
    passes: int = _field(1, doc="multi-pass: alternate forward and backward sweeps (Ruder 2016)", flag=True)
    pass_iterations: int = _field(50, doc="iterations per frame in each pass after the first")
    # Real clips: ordinary frames >= 0.25 reliable, histogram <= 0.15; cuts <= 0.06 and >= 0.84.
    cut_reliable: float = _field(0.15, doc="a frame whose reliable-pixel fraction is below this is a scene cut")
    cut_histogram: float = _field(0.5, doc="a frame whose colour histogram distance (Bhattacharyya) exceeds this is a scene cut")
    # ---- shots in parallel (see shots.py) -------------------------------------------------------
    shots: str = _field("auto", frames=False, doc="auto: with more than one device (--devices, --ray), stylise the shots between scene cuts in parallel; off: one frame loop from the first frame to the last", flag=True, metavar="auto|off")
    max_shot_frames: int = _field(0, doc="split shots longer than this many frames into chunks stylised independently (0: never); each chunk after the first starts cold chunk_overlap frames early and crossfades into the one before", flag=True, metavar="N")
    chunk_overlap: int = _field(8, doc="frames a chunk stylises before its start (burn-in, then crossfaded; with max_shot_frames)", flag=True, metavar="K")
    threads: int = _field(0, frames=False, doc="CPU threads of each worker (0: the cores shared out among the CPU workers); CPU results are bit-identical only for the same thread count", flag=True)
    # ---- output -------------------------------------------------------------------------------
    fps: Fraction | None = _field(None, frames=False, doc="frame rate of a video made from frames (default 25), or resample a video", flag=True, metavar="RATE")
    crf: int = _field(18, frames=False, doc="encoder quality (lower is better)", flag=True)
    codec: str = _field("auto", frames=False, doc="the video encoder: auto (H.264; VP9 for .webm), h264, h265, vp9, prores, ffv1 or an ffmpeg encoder", flag=True, metavar="NAME")
    keep_size: bool = _field(False, frames=False, doc="scale the result back to the input's size", flag=True)
    # ---- quality over time --------------------------------------------------------------------
    # Not frames=False: the later frames after a reference are judged against the level it measured.
    reference_every: int = _field(0, doc="also optimise every Nth frame cold (not used in the output) to report drift as later frames against cold, and judge the frames after it by its level (0: off)", flag=True, metavar="N")

    def __post_init__(self) -> None:
        _validate(self)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-able values (Fractions as "num/den", mappings as dicts)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Fraction):
                value = f"{value.numerator}/{value.denominator}"
            out[f.name] = value
        return out

    def frames_dict(self) -> dict[str, Any]:
        """Only the settings that can change the stylised frames (the identity of a job)."""
        keep = {f.name for f in fields(self) if f.metadata.get("frames", True)}
        return {k: v for k, v in self.to_dict().items() if k in keep}

    def coarse_sizes(self) -> list[tuple[int, int]]:
        """(longest side px, iterations) of each coarse scale that applies to `size`."""
        out = []
        for scale, iterations in zip(self.scales, self.scale_iterations):
            pixels = round(scale * self.size) if scale <= 1 else round(scale)
            if max(MIN_SIZE, self.min_scale) <= pixels < self.size:
                out.append((pixels, iterations))
        return out

    def min_side(self) -> tuple[int, str]:
        """(px, layer): the shortest image side VGG19 can take for the deepest layer used, which must keep at
        least one pixel after its poolings; frames, coarse scales and style images are kept at least this big."""
        layers = list(self.content_layers) + list(self.style_layers)
        deepest = max(layers, key=VGG19_LAYERS.index)
        return downsampling(deepest), deepest

    @property
    def step_size(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1.0 if self.optimizer == "lbfgs" else 0.02


KEYS: tuple[str, ...] = tuple(f.name for f in fields(Config))

CHOICES = {
    "weights_format": ("torchvision", "caffe"),
    "pooling": ("max", "avg", "blur"),
    "loss_scale": ("mean", "paper"),
    "optimizer": ("lbfgs", "adam"),
    "precision": ("auto", "fp32", "tf32", "bf16"),
    "flow_method": ("dis", "farneback"),
    "dis_preset": ("ultrafast", "fast", "medium"),
    "unreliable_init": ("content", "noise", "warped", "inpaint", "matched"),
    "start_warp": ("bilinear", "bicubic", "nearest"),
    "shots": ("auto", "off"),
}
MIN_SIZE, MAX_SIZE = 32, 8192


def _finite_numbers(cfg: Config) -> list[tuple[str, float]]:
    """Every number of a Config, named, for the finiteness check."""
    out = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, (int, float, Fraction)) and not isinstance(value, bool):
            out.append((f.name, float(value)))
        elif isinstance(value, tuple):
            out += [(f.name, float(v)) for v in value]
        elif isinstance(value, Mapping):
            out += [(f"{f.name}.{k}", float(v)) for k, v in value.items()]
    return out


def _validate(cfg: Config) -> None:
    for key, number in _finite_numbers(cfg):
        if not math.isfinite(number):
            raise ConfigError(f"{key} must be a finite number, not {number}")
    for key, choices in CHOICES.items():
        if getattr(cfg, key) not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(choices)}, not {getattr(cfg, key)!r}")
    if not MIN_SIZE <= cfg.size <= MAX_SIZE:
        raise ConfigError(f"size must be between {MIN_SIZE} and {MAX_SIZE} px, not {cfg.size}")
    for key in ("content_weight", "style_weight", "tv_weight", "temporal_weight", "tolerance", "reference_every",
                "min_scale", "max_shot_frames", "chunk_overlap", "threads", "reprobe_after"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{key} must not be negative, not {getattr(cfg, key)}")
    for key in ("iterations", "frame_iterations", "tolerance_window", "passes", "log_every"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key} must be at least 1, not {getattr(cfg, key)}")
    if cfg.long_term < 0 or cfg.long_term > 8:
        raise ConfigError(f"long_term must be between 0 and 8, not {cfg.long_term}")
    if cfg.max_shot_frames and cfg.chunk_overlap >= cfg.max_shot_frames:
        raise ConfigError(f"chunk_overlap ({cfg.chunk_overlap}) must be smaller than max_shot_frames ({cfg.max_shot_frames})")
    if cfg.frame_extension < 1:
        raise ConfigError(f"frame_extension must be at least 1, not {cfg.frame_extension}")
    if cfg.temporal_detail < 0 or cfg.temporal_sigma <= 0:
        raise ConfigError("temporal_detail must not be negative and temporal_sigma must be positive")
    if not 0 < cfg.temporal_relax <= 1:
        raise ConfigError(f"temporal_relax must be in (0, 1], not {cfg.temporal_relax}")
    if cfg.probe_every < 0 or cfg.probe_iterations < 1:
        raise ConfigError(f"probe_every must not be negative and probe_iterations must be at least 1, "
                          f"not {cfg.probe_every} and {cfg.probe_iterations}")
    if not 0 <= cfg.temporal_floor <= 1:
        raise ConfigError(f"temporal_floor must be in [0, 1], not {cfg.temporal_floor}")
    if not 0 <= cfg.relax_share < 1:
        raise ConfigError(f"relax_share must be in [0, 1), not {cfg.relax_share}")
    if cfg.relax_every < 1:
        raise ConfigError(f"relax_every must be at least 1, not {cfg.relax_every}")
    if cfg.term_slack != 0 and cfg.term_slack < 1:
        raise ConfigError(f"term_slack must be 0 (off) or at least 1, not {cfg.term_slack}")
    if cfg.quality_slack != 0 and cfg.quality_slack < 1:
        raise ConfigError(f"quality_slack must be 0 (off) or at least 1, not {cfg.quality_slack}")
    if cfg.pass_iterations < 1:
        raise ConfigError(f"pass_iterations must be at least 1, not {cfg.pass_iterations}")
    if cfg.style_scale <= 0:
        raise ConfigError(f"style_scale must be positive, not {cfg.style_scale}")
    if cfg.lr is not None and cfg.lr <= 0:
        raise ConfigError(f"lr must be positive, not {cfg.lr}")
    if cfg.fps is not None and cfg.fps <= 0:
        raise ConfigError(f"fps must be positive, not {cfg.fps}")
    if not 0 <= cfg.crf <= 63:
        raise ConfigError(f"crf must be between 0 and 63, not {cfg.crf}")
    if not 1 <= cfg.flow_scale <= 4:
        raise ConfigError(f"flow_scale must be between 1 and 4, not {cfg.flow_scale}")
    if not 0 <= cfg.photometric <= 1:
        raise ConfigError(f"photometric must be between 0 and 1, not {cfg.photometric}")
    if not 0 <= cfg.cut_reliable <= 1 or not 0 <= cfg.cut_histogram <= 1:
        raise ConfigError("cut_reliable and cut_histogram must be between 0 and 1")
    _validate_model(cfg)


def _validate_model(cfg: Config) -> None:
    """The style blend, the layers and the coarse-to-fine schedule."""
    if cfg.style_blend is not None:
        if any(w < 0 for w in cfg.style_blend) or sum(cfg.style_blend) <= 0:
            raise ConfigError("style_blend weights must be non-negative and not all zero")
    if not cfg.content_layers and not cfg.style_layers:
        raise ConfigError("content_layers and style_layers are both empty: nothing to optimise")
    for key in ("content_layers", "style_layers"):
        for layer, weight in getattr(cfg, key).items():
            if layer not in VGG19_LAYERS:
                raise ConfigError(f"{key}: unknown layer {layer!r}; valid layers: {', '.join(VGG19_LAYERS)}")
            if weight < 0:
                raise ConfigError(f"{key}: weight of {layer} must not be negative")
    if len(cfg.scales) != len(cfg.scale_iterations):
        raise ConfigError(f"scales has {len(cfg.scales)} entries but scale_iterations has {len(cfg.scale_iterations)}")
    if list(cfg.scales) != sorted(set(cfg.scales)) or any(s <= 0 for s in cfg.scales):
        raise ConfigError(f"scales must be positive, ascending and distinct: {list(cfg.scales)}")
    if any(n < 1 for n in cfg.scale_iterations):
        raise ConfigError("scale_iterations must all be at least 1")


# ---- strict YAML / override coercion --------------------------------------------------------------

def parse_fraction(value: Any) -> Fraction:
    """30, 29.97, "30000/1001" or "29.97" as an exact Fraction; NTSC decimals map to their exact rate."""
    if isinstance(value, bool):
        raise ValueError("not a number")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, str) and "/" in value:
        num, den = value.split("/", 1)
        return Fraction(int(num), int(den))
    number = float(value)
    for base in (24, 30, 48, 60, 120, 240):
        if abs(number - base * 1000 / 1001) < 0.006:
            return Fraction(base * 1000, 1001)
    return Fraction(str(value)).limit_denominator(1001) if isinstance(value, str) else Fraction(number).limit_denominator(1001)


def _coerce(key: str, hint: Any, value: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(key, inner, value)
    bad = ConfigError(f"{key}: expected {_type_name(hint)}, got {describe(value)}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if hint is str:
        if isinstance(value, str):
            return value
        raise bad
    if hint is Fraction:
        try:
            return parse_fraction(value)
        except (ValueError, ZeroDivisionError, TypeError):
            raise bad from None
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise bad
        inner = args[0]
        out = []
        for item in value:
            if isinstance(item, str) and inner in (int, float):
                try:
                    item = inner(item)
                except ValueError:
                    raise bad from None
            out.append(_coerce(key, inner, item))
        return tuple(out)
    if origin is collections.abc.Mapping:
        if isinstance(value, (list, tuple)):  # a plain list of layers: equal weights
            value = {layer: 1.0 / len(value) for layer in value} if value else {}
        if not isinstance(value, Mapping):
            raise bad
        return _frozen_map({str(k): _coerce(f"{key}.{k}", float, v) for k, v in value.items()})
    raise bad


def describe(value: Any, limit: int = 40) -> str:
    """A value for an error message, checked by type before anything is formatted: a scalar quoted up to `limit`
    characters, a list or mapping only named with its length (a YAML alias bomb is never walked)."""
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, Mapping):
        return f"a mapping of {len(value)} key{'s' if len(value) != 1 else ''}"
    if isinstance(value, str):
        text = value.strip()
        return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"
    if value is None or isinstance(value, (bool, int, float)):
        text = repr(value)
        return text if len(text) <= limit else text[:limit] + "..."
    return f"a YAML {type(value).__name__}"


def _type_name(hint: Any) -> str:
    if hint is Fraction:
        return "a frame rate (number or num/den)"
    if typing.get_origin(hint) is tuple:
        inner = typing.get_args(hint)[0]
        return "comma-separated whole numbers" if inner is int else "comma-separated numbers"
    if typing.get_origin(hint) is collections.abc.Mapping:
        return "a mapping of layer names to weights"
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


_HINTS = typing.get_type_hints(Config)


def coerce_values(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Check keys and types of raw values (from YAML or a job file) against Config."""
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
                          f" (valid keys: {', '.join(KEYS)})")
    return {k: _coerce(k, _HINTS[k], v) for k, v in values.items()}


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML itself keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first on line {seen[key]})", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """Safe YAML (no objects), strict about duplicate keys."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)


def yaml_error(error: yaml.YAMLError) -> str:
    """A YAML error in one line: the problem and where."""
    problem = getattr(error, "problem", None)
    mark = getattr(error, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(error).splitlines()[0]


def preset_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def read_yaml_config(name_or_path: str) -> dict[str, Any]:
    """The raw values of a preset name (`fast`) or YAML file path, strictly checked."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ConfigError(f"unknown config {name_or_path!r}: presets are {', '.join(preset_names())}, "
                              "or give the path of a YAML file")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {yaml_error(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of keys to values")
    return coerce_values(data, str(path))


def load_config(name_or_path: str | None = "default", **overrides: Any) -> Config:
    """Preset or YAML file, then `overrides` (already typed, e.g. from CLI flags) on top."""
    values = read_yaml_config(name_or_path) if name_or_path else {}
    values.update(coerce_values({k: v for k, v in overrides.items() if v is not None}, "option"))
    return Config(**values)


def config_from_dict(values: Mapping[str, Any]) -> Config:
    """Rebuild a Config from `Config.to_dict()` output (e.g. a work directory's job.json)."""
    return Config(**coerce_values(values, "config"))


def reference_yaml() -> str:
    """The text of configs/default.yaml: every key commented out with its default and meaning.
    Regenerate with: python -c "from pipeline.config import reference_yaml; print(reference_yaml(), end='')" > configs/default.yaml"""
    defaults = Config().to_dict()
    lines = ["# The preset the CLI uses. It sets nothing: every default lives once, in pipeline/config.py (Config).",
             "# Below, each key with its default, for reference: copy a line into your own YAML file, uncomment",
             "# and change it, then run `nst-video IN STYLE OUT --config my.yaml` (flags still override it).",
             "# `nst-video config [--config NAME] [flags]` prints what a run would use.", ""]
    for f in fields(Config):
        value = yaml.safe_dump({f.name: defaults[f.name]}, default_flow_style=True, width=1000).strip()[1:-1]
        lines.append(f"# {value:<48} # {f.metadata['doc']}")
    return "\n".join(lines) + "\n"
