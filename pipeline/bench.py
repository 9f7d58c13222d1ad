"""Benchmarks anyone can rerun: fixed, seeded workloads made in code, random VGG19 weights unless a weights
file is given, timings reported as ratios against a reference measured in the same run.

    speed     s/iteration against bare VGG19, s/frame, idle fraction, memory, and plain per-frame Gatys
    temporal  flicker and quality at once over clips with known motion (temporal_bench.py)
    chunks    a long shot in chunks: what the seams cost (chunks_bench.py)
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import media, video
from .config import Config, load_config
from .losses import build_objective
from .memory import peak_bytes
from .clips import flicker_clip, photo
from .metrics import truth_error
from .optimise import Plan, stylise
from .runtime import peak_memory, reset_peak_memory, resolve_precision, synchronize
from .synthetic import MECHANICS_WEIGHTS, save_random_weights, write_frames
from .tensors import to_frame, to_tensor

@dataclass
class Workspace:
    """Temporary files of a benchmark: weights, style image, clips."""

    root: Path
    weights: str
    style: Path

    @classmethod
    def create(cls, weights: str | None, seed: int = 0) -> "Workspace":
        root = Path(tempfile.mkdtemp(prefix="nst-bench-"))
        if weights is None:
            weights = str(save_random_weights(root / "vgg19-random.pth", seed=seed))
        style = root / "style.png"
        media.write_image(style, photo("the_scream.png", seed + 7, (256, 320)))
        return cls(root, weights, style)

    def cleanup(self) -> None:
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)


def later_evaluations(summary: video.Summary) -> float:
    """Evaluations of the objective per later frame, mean: the frames' own, and those spent measuring the cold
    level they are judged against (probes, references) shared out over them (0 for a single frame)."""
    later = len(summary.iterations) - 1
    return (sum(summary.iterations[1:]) + summary.level_iterations) / later if later > 0 else 0.0


def _table(columns: list[tuple[str, int, Callable]], rows: list, note: str = "") -> str:
    """A plain-text table: each column (header, width, cell of a row); the first is left-aligned."""
    def line(cells: list[str]) -> str:
        return " ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, (_, w, _)) in enumerate(zip(cells, columns)))
    lines = [line([header for header, _, _ in columns])] + ([note] if note else [])
    return "\n".join(lines + [line([cell(r) for _, _, cell in columns]) for r in rows])


# ---- speed: overhead, multi-scale, and the clip against plain per-frame Gatys -------------------------

def _setup(cfg: Config, device, size: tuple[int, int]):
    """Model, objective with targets, and a content tensor for a (W, H) frame."""

    objective = build_objective(cfg, device)
    model = objective.model
    content = to_tensor(media.resize(photo("tubingen.png", 3, size), size), device)
    objective.set_style([to_tensor(photo("the_scream.png", 7, (320, 400)), device)])
    objective.set_content(content)
    return model, objective, content


def _timed(fn: Callable[[], None], device, repeats: int) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeats


@dataclass
class OverheadRow:
    size: tuple[int, int]
    precision: str
    objective_seconds: float
    bare_seconds: float
    ratio: float
    peak_memory: int
    estimated_memory: int
    step_seconds: float = 0.0       # per iteration of the optimiser itself (L-BFGS on the objective, its syncs included)

    @property
    def step_ratio(self) -> float:
        return self.step_seconds / self.bare_seconds


def overhead_benchmark(size: tuple[int, int], cfg: Config, device, repeats: int = 5) -> OverheadRow:
    """Seconds per iteration of the full objective (features, Grams, all losses, backward) against a bare
    VGG19 forward and backward to the same depth, alternating blocks so drift hits both alike; and of the
    optimiser's own iterations (stylise, L-BFGS: what torch's L-BFGS adds, its host syncs among it)."""
    import torch

    reset_peak_memory(device)
    model, objective, content = _setup(cfg, device, size)
    deepest = model.layers[-1]
    x = content.clone().requires_grad_(True)

    def bare() -> None:
        with torch.autocast(device.type, dtype=objective.autocast_dtype or torch.bfloat16,
                            enabled=objective.autocast_dtype is not None):
            out = model(x, [deepest])[deepest]
        out.float().sum().backward()
        x.grad = None

    def full() -> None:
        total, _ = objective(x)
        total.backward()
        x.grad = None

    bare(), full()  # warm-up (cuDNN autotuning, allocator)
    objective_times, bare_times = [], []
    for _ in range(3):
        bare_times.append(_timed(bare, device, repeats))
        objective_times.append(_timed(full, device, repeats))
    objective_s, bare_s = float(np.median(objective_times)), float(np.median(bare_times))
    steps = 3 * repeats  # a run of 2n iterations less one of n: what a call costs once (targets, the final evaluation) cancels
    runs = [_timed(lambda: stylise(content, content, objective, Plan((((size[1], size[0]), n),), log_every=cfg.log_every)),
                   device, 1) for n in (steps, 2 * steps)]
    step_s = max(runs[1] - runs[0], 1e-9) / steps
    return OverheadRow(size, resolve_precision(device, cfg.precision), objective_s, bare_s, objective_s / bare_s,
                       peak_memory(device), peak_bytes(size[1], size[0], cfg), step_s)


@dataclass
class FlowRow:
    size: tuple[int, int]
    flow_seconds: float            # one frame's motion analysis (flow both ways, consistency, cut tests), one thread
    later_seconds: float           # one later frame's optimisation at its budget (frame_iterations x L-BFGS s/iteration)
    workers: int                   # threads the product computes the flow in on this device
    idle_fraction: float           # of the device's time, waiting for the flow, in a steady state

    @property
    def ratio(self) -> float:
        return self.flow_seconds / self.later_seconds


def flow_benchmark(size: tuple[int, int], cfg: Config, device, iteration_seconds: float, repeats: int = 3) -> FlowRow:
    """Seconds of one frame's motion analysis at `size` (a photograph panned 3 px) against a later frame's
    optimisation; with the flow in `flow_workers` threads ahead of the optimiser, the device waits only where a
    frame's flow per thread takes longer than its optimisation."""
    from .flow import MotionAnalyser, flow_workers

    width, height = size
    wide = photo("tubingen.png", 3, (width + 3, height))
    first, second = wide[:, 3:], wide[:, :-3]
    analyser = MotionAnalyser(cfg.replace(long_term=0))
    analyser.pair(first, second)  # warm-up
    flow_s = float(np.median([_timed(lambda: analyser.pair(first, second), device, 1) for _ in range(repeats)]))
    later_s = iteration_seconds * cfg.frame_iterations
    workers = flow_workers(device.type)
    return FlowRow(size, flow_s, later_s, workers, max(0.0, 1 - later_s * workers / flow_s))


@dataclass
class ImageRow:
    size: tuple[int, int]
    precision: str
    multiscale_seconds: float       # to reach the target loss
    single_seconds: float
    speedup: float
    target_loss: float
    multiscale_final: float
    single_final: float
    schedule: list


def _loss_curve(content, objective, plan, device) -> tuple[list[tuple[float, float]], float, list]:
    """(seconds, total loss) at every iteration of the final scale, the final loss, and the sizes."""

    points: list[tuple[float, float]] = []
    start = time.perf_counter()
    final_size = plan.scales[-1][0]

    def record(step) -> None:
        if step.size == final_size:
            points.append((time.perf_counter() - start, step.losses["total"]))

    result = stylise(content, content, objective, plan, callback=record)
    return points, result.losses["total"], result.sizes


def image_benchmark(size: tuple[int, int], cfg: Config, device) -> ImageRow:
    """The multi-scale schedule of cfg against single-scale L-BFGS with the same iteration count: wall
    time until each reaches the loss both reach (the higher of the two final losses)."""
    from dataclasses import replace

    _, objective, content = _setup(cfg, device, size)
    hw = (size[1], size[0])
    multi = replace(Plan.for_frame(cfg, hw, first=True), log_every=1)
    single = Plan(((hw, cfg.iterations),), "lbfgs", 1.0, log_every=1)
    multi_points, multi_final, sizes = _loss_curve(content, objective, multi, device)
    single_points, single_final, _ = _loss_curve(content, objective, single, device)
    target = max(multi_final, single_final)
    reach = lambda points: next((t for t, loss in points if loss <= target * 1.0001), points[-1][0])  # noqa: E731
    t_multi, t_single = reach(multi_points), reach(single_points)
    return ImageRow(size, resolve_precision(device, cfg.precision), t_multi, t_single, t_single / t_multi, target, multi_final, single_final,
                    [list(s) for s in sizes])


def plain_gatys(frames: list[np.ndarray], objective, device, evaluations: int = 300) -> tuple[list[np.ndarray], list[float], list[dict]]:
    """The per-frame loop users write from the PyTorch tutorial: each frame cold from its content image,
    torch's L-BFGS with its defaults, the image clamped to [0, 1] in the closure, 300 evaluations, one
    scale, no temporal term. Returns frames, seconds per frame and final losses."""
    import torch

    out, seconds, finals = [], [], []
    for frame in frames:
        start = time.perf_counter()
        content = to_tensor(frame, device)
        objective.set_content(content)
        x = content.clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS([x])
        count = [0]
        parts_box: list[dict] = [{}]

        def closure():
            with torch.no_grad():
                x.clamp_(0, 1)
            optimizer.zero_grad()
            total, parts = objective(x)
            total.backward()
            count[0] += 1
            parts_box[0] = parts
            return total

        while count[0] < evaluations:
            optimizer.step(closure)
        with torch.no_grad():
            x.clamp_(0, 1)
        synchronize(device)
        seconds.append(time.perf_counter() - start)
        finals.append({k: float(v.detach()) for k, v in parts_box[0].items()})
        out.append(to_frame(x))
    return out, seconds, finals


@dataclass
class ClipRow:
    size: tuple[int, int]
    frames: int
    ours_seconds: float
    ours_first: float
    ours_later: float
    ours_iterations_first: int
    ours_iterations_later: float
    idle_fraction: float
    flow_seconds: float           # per frame, summed over the flow threads
    peak_memory: int
    reference_seconds: float
    reference_per_frame: float
    speedup: float
    later_speedup: float
    ours_style: float
    reference_style: float
    ours_content: float
    reference_content: float
    ours_temporal_error: float
    reference_temporal_error: float


def clip_benchmark(frames: int, width: int, cfg: Config, device, workspace: Workspace, *,
                   reference_evaluations: int = 300, progress: Callable[[str], None] = lambda m: None) -> ClipRow:
    """The synthetic clip through nst-video (cfg) and through the plain per-frame loop, same objective; its
    files go in a folder of `workspace`, removed at the end."""
    import shutil

    workspace_root = workspace.root / "clip"
    try:
        clip = flicker_clip(frames, width)
        source = write_frames(clip.frames, workspace_root / "input")
        style = workspace_root / "style.png"
        media.write_image(style, photo("the_scream.png", 7, (320, 400)))
        progress(f"nst-video on {frames} frames at {width} px")
        reset_peak_memory(device)
        summary = video.run(video.Job(source, (style,), workspace_root / "ours"), cfg)
        ours = [media.read_image(workspace_root / "ours" / media.FRAME_NAME.format(i)) for i in range(frames)]
        finals = [summary.losses[i] for i in range(frames)]
        progress(f"plain per-frame Gatys ({reference_evaluations} L-BFGS evaluations per frame)")
        _, objective, _ = _setup(cfg, device, (clip.frames[0].shape[1], clip.frames[0].shape[0]))
        size = media.working_size(clip.frames[0].shape[1], clip.frames[0].shape[0], cfg.size)
        inputs = [media.resize(f, size) for f in clip.frames]
        reference, seconds, reference_finals = plain_gatys(inputs, objective, device, reference_evaluations)
        later = summary.later_frame_seconds or [0.0]
        ours_total = (summary.first_frame_seconds or 0.0) + sum(later)
        ref_total = sum(seconds)
        truth = lambda images: truth_error([media.resize(i, (clip.frames[0].shape[1], clip.frames[0].shape[0]))  # noqa: E731
                                            for i in images], clip.backward, clip.visible)
        return ClipRow((size[0], size[1]), frames, ours_total, summary.first_frame_seconds or 0.0,
                       float(np.mean(later)), summary.iterations[0], later_evaluations(summary),
                       summary.idle_fraction, summary.flow_seconds / max(summary.flow_pairs, 1), peak_memory(device),
                       ref_total, float(np.mean(seconds)),
                       ref_total / ours_total, float(np.mean(seconds[1:])) / float(np.mean(later)),
                       float(np.mean([f["style"] for f in finals])),
                       float(np.mean([f["style"] for f in reference_finals])),
                       float(np.mean([f["content"] for f in finals])),
                       float(np.mean([f["content"] for f in reference_finals])),
                       truth(ours), truth(reference))
    finally:
        shutil.rmtree(workspace_root, ignore_errors=True)

                                # enough workers goes with this, not with the clip's length


# ---- the speed report of `nst-video bench` ---------------------------------------------------------------

def speed_benchmark(config_name: str, device, sizes: list[int] | None, precisions: list[str] | None, skip: set[str], *,
                    frames: int, clip_size: int | None, weights: str | None, reference_evaluations: int,
                    say: Callable[[str], None], progress: Callable[[str], None]) -> dict:
    """The three speed figures on `device` (parts in `skip` left out), each said as a line when measured;
    returns them all for --json. Sizes, precisions and the clip's width not given are the device's defaults."""
    gpu = device.type == "cuda"
    sizes = sizes or ([512, 1920] if gpu else [256])
    precisions = precisions or (["fp32", "tf32", "bf16"] if gpu else ["auto"])
    clip_size = clip_size or (512 if gpu else 160)

    workspace = Workspace.create(weights)
    try:
        cfg = load_config(config_name, device=str(device), weights=workspace.weights,
                          **({} if weights else MECHANICS_WEIGHTS))
        report: dict = {"device": str(device), "torch": __import__("torch").__version__,
                        "weights": "given" if weights else "seeded random", "config": config_name}
        frame_sizes = [(longest, round(longest * 9 / 16) // 2 * 2) for longest in sizes]
        iteration = {}
        if "overhead" not in skip:
            say("objective vs bare VGG19 forward+backward (s/iteration), and a later frame at its budget:")
            report["overhead"] = []
            for size in frame_sizes:
                for precision in precisions:
                    row = overhead_benchmark(size, cfg.replace(size=size[0], precision=precision), device)
                    report["overhead"].append({**row.__dict__, "step_ratio": row.step_ratio})
                    if size not in iteration or row.precision == resolve_precision(device, cfg.precision):
                        iteration[size] = row.step_seconds  # the flow is set against the default precision
                    say(f"  {size[0]}x{size[1]} {row.precision}: objective {row.objective_seconds:.4f}, bare "
                        f"{row.bare_seconds:.4f}, ratio {row.ratio:.3f}; L-BFGS iteration {row.step_seconds:.4f}, "
                        f"ratio {row.step_ratio:.3f}; later frame {cfg.frame_iterations} x "
                        f"{row.step_seconds:.4f} = {cfg.frame_iterations * row.step_seconds:.2f} s; peak memory "
                        f"{row.peak_memory / 2**20:.0f} MiB (estimate {row.estimated_memory / 2**20:.0f} MiB)")
        if "flow" not in skip:
            say("optical flow per frame against a later frame's optimisation (s):")
            report["flow"] = []
            for size in frame_sizes:
                if size not in iteration:
                    iteration[size] = overhead_benchmark(size, cfg.replace(size=size[0]), device).step_seconds
                row = flow_benchmark(size, cfg.replace(size=size[0]), device, iteration[size])
                report["flow"].append({**row.__dict__, "ratio": row.ratio})
                say(f"  {size[0]}x{size[1]}: flow {row.flow_seconds:.3f} s (one thread), optimisation "
                    f"{row.later_seconds:.2f} s, flow/optimisation {row.ratio:.2f}; in {row.workers} flow "
                    f"thread(s) the device waits {100 * row.idle_fraction:.0f}% of the time")
        if "image" not in skip:
            say("single image, multi-scale schedule vs single-scale L-BFGS, time to the same loss:")
            report["image"] = []
            for size in frame_sizes:
                for precision in precisions:
                    progress(f"running image {size[0]}x{size[1]} {precision}")
                    row = image_benchmark(size, cfg.replace(size=size[0], precision=precision), device)
                    report["image"].append(row.__dict__)
                    say(f"  {size[0]}x{size[1]} {precision}: multi-scale {row.multiscale_seconds:.1f} s, single-scale "
                        f"{row.single_seconds:.1f} s, speed-up {row.speedup:.2f}x; final loss {row.multiscale_final:.5g}"
                        f" vs {row.single_final:.5g}")
        if "clip" not in skip:
            row = clip_benchmark(frames, clip_size, cfg.replace(size=clip_size), device, workspace,
                                 reference_evaluations=reference_evaluations, progress=progress)
            report["clip"] = row.__dict__
            say(clip_report(row))
        return report
    finally:
        workspace.cleanup()


def clip_report(row: "ClipRow") -> str:
    return "\n".join([
        f"clip, {row.frames} frames at {row.size[0]}x{row.size[1]}:",
        f"  nst-video: {row.ours_seconds:.1f} s (first frame {row.ours_first:.2f} s, {row.ours_iterations_first} "
        f"iterations; later {row.ours_later:.2f} s, {row.ours_iterations_later:.1f} iterations); "
        f"flow {row.flow_seconds:.3f} s a frame; optimiser idle {100 * row.idle_fraction:.1f}%; peak memory "
        f"{row.peak_memory / 2**20:.0f} MiB",
        f"  plain per-frame Gatys: {row.reference_seconds:.1f} s ({row.reference_per_frame:.2f} s/frame)",
        f"  speed-up: whole clip {row.speedup:.2f}x, later frames {row.later_speedup:.2f}x",
        f"  final style loss {row.ours_style:.4g} vs {row.reference_style:.4g}; content "
        f"{row.ours_content:.4g} vs {row.reference_content:.4g}; temporal error (true flow) "
        f"{row.ours_temporal_error:.2f} vs {row.reference_temporal_error:.2f}"])
