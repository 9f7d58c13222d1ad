"""The per-frame optimiser: schedules, convergence stop, precision, and the overlapped pipeline."""
import dataclasses

import numpy as np
import pytest

from pipeline.config import Config
from pipeline.losses import Objective
from pipeline.optimise import Plan, stylise
from pipeline.tensors import to_tensor
from pipeline.synthetic import MECHANICS_WEIGHTS, random_vgg19_weights, texture
from pipeline.vgg import VGG19Features

CFG = Config(**MECHANICS_WEIGHTS)


@pytest.fixture(scope="module")
def objective():
    model = VGG19Features(random_vgg19_weights(0), list(CFG.content_layers) + list(CFG.style_layers))
    obj = Objective(model, CFG.content_layers, CFG.style_layers, content_weight=1.0, style_weight=1e5, tv_weight=1.0)
    obj.set_style([to_tensor(texture(64, 64, 9))])
    return obj


def test_multiscale_schedule_visits_the_sizes_asked_for_and_ends_at_size(objective):
    cfg = CFG.replace(size=96, scales=(48, 64, 128), scale_iterations=(4, 3, 5), iterations=15, min_scale=0)
    plan = Plan.for_frame(cfg, (54, 96), first=True)
    assert [s for s, _ in plan.scales] == [(27, 48), (36, 64), (54, 96)]       # 128 is not below size: skipped
    assert [n for _, n in plan.scales] == [4, 3, 8] and plan.iterations == 15
    content = to_tensor(texture(54, 96, 2))
    for optimizer in ("lbfgs", "adam"):
        result = stylise(content, content, objective, Plan(plan.scales, optimizer, 1.0 if optimizer == "lbfgs" else 0.02))
        assert result.sizes == [(27, 48), (36, 64), (54, 96)]
        assert result.image.shape == (1, 3, 54, 96) and result.iterations == 15
        assert len(result.history) == 15
    later = Plan.for_frame(cfg, (54, 96), first=False)
    assert later.scales == (((54, 96), cfg.frame_iterations),)


def test_coarse_scales_stay_at_a_useful_size():
    """The default schedule's coarsest scale is a quarter of --size: at 96 px that would be 24 px, which fits
    nothing useful; scales below `min_scale` (128 px) are skipped unless set lower."""
    assert [s for s, _ in Plan.for_frame(Config(size=96), (64, 96), first=True).scales] == [(64, 96)]
    assert [s for s, _ in Plan.for_frame(Config(size=256), (144, 256), first=True).scales] == [
        (72, 128), (102, 181), (144, 256)]
    assert Plan.for_frame(Config(size=512), (288, 512), first=True).scales[0][0] == (72, 128)
    assert len(Plan.for_frame(Config(size=96, min_scale=16), (64, 96), first=True).scales) == 4  # 24 px < 32


def test_a_cold_black_or_saturated_frame_is_still_stylised(objective):
    """L-BFGS works through a tanh bound, which is flat at 0 and 1: a black frame, or an inverted one full of
    white, started from its content must still move (unguarded, both stayed at or above their start)."""
    import torch
    bright = to_tensor(255 - texture(48, 64, 4))
    for content in (torch.zeros(1, 3, 48, 64), bright.clamp(0, 1) ** 0.2):
        result = stylise(content, content, objective, Plan((((48, 64), 20),), "lbfgs", 1.0))
        start, end = result.history[0], result.losses
        assert end["content"] + end["style"] < 0.3 * (start["content"] + start["style"])
        assert result.iterations == 20  # a line search in progress is cut at the cap


def test_the_early_stop_must_be_earned(objective):
    """A frame may stop on the tolerance rule only once its content + style are at the target level (and each
    term at its own, where given): at an unreachable level it runs to its cap, at a reachable one it stops early."""
    content = to_tensor(texture(48, 64, 4))
    plan = Plan((((48, 64), 40),), "lbfgs", 1.0, tolerance=0.5, tolerance_window=2, log_every=2)
    stops = stylise(content, content, objective, plan)
    assert stops.converged and stops.iterations < 40
    worse = stylise(content, content, objective, Plan(plan.scales, "lbfgs", 1.0, 0.5, 2, 2, quality_target=0.0))
    assert not worse.converged and worse.iterations == 40
    longer = stylise(content, content, objective, Plan(plan.scales, "lbfgs", 1.0, 0.5, 2, 2, quality_target=0.0,
                                                       extend_to=56))
    assert longer.iterations == 56  # still worse than the level at its cap: it keeps going to the extended cap
    level = stops.losses["content"] + stops.losses["style"]
    good = stylise(content, content, objective, Plan(plan.scales, "lbfgs", 1.0, 0.5, 2, 2, quality_target=level * 2))
    assert good.converged and good.iterations < 40
    # judged on content and style apart as well: a frame whose sum is at the level but whose content is not
    # runs to its cap; with both terms within their targets it stops where the sum alone stopped it
    terms = dict(quality_target=level * 2)
    short = stylise(content, content, objective, Plan(plan.scales, "lbfgs", 1.0, 0.5, 2, 2, **terms,
                                                      term_targets=(0.0, float("inf"))))
    assert not short.converged and short.iterations == 40
    both = stylise(content, content, objective, Plan(plan.scales, "lbfgs", 1.0, 0.5, 2, 2, **terms,
                                                     term_targets=(good.losses["content"] * 2, good.losses["style"] * 2)))
    assert both.converged and both.iterations == good.iterations


def test_a_frame_its_temporal_term_holds_back_is_relaxed_to_the_level(objective):
    """A later frame held to its warped previous result (here: a stylised image moved by 3 and 5 px) at a
    strong temporal weight cannot reach the level the frame reaches on its own; relaxing that weight every
    few iterations lets it reach the level and stop there, and the result says how far the weight went. A
    frame that starts where the last one ended (the shot carries the factor on) needs far fewer iterations.
    The relaxation is the optimisation's own: the objective scores an image after it exactly as before."""
    import torch
    from pipeline.losses import TemporalTarget
    from pipeline.optimise import quality

    content = to_tensor(texture(48, 64, 4))
    shifted = torch.roll(stylise(content, content, objective, Plan((((48, 64), 30),), "lbfgs", 1.0)).image, (3, 5), (2, 3))
    level = quality(stylise(content, shifted, objective, Plan((((48, 64), 30),), "lbfgs", 1.0)).losses)
    held = [TemporalTarget(shifted, torch.ones(1, 1, 48, 64))]
    objective.temporal_weight = 2000.0

    def score() -> float:
        objective.set_content(content)
        objective.set_temporal(held)
        try:
            return objective(shifted)[0].item()
        finally:
            objective.set_temporal([])

    try:
        before = score()
        plan = Plan((((48, 64), 30),), "lbfgs", 1.0, quality_target=1.3 * level, extend_to=120, log_every=5)
        pinned = stylise(content, shifted, objective, plan, temporal=held)
        assert not pinned.converged and pinned.iterations == 120 and quality(pinned.losses) > 1.3 * level
        assert pinned.temporal_scale == 1.0 and pinned.relaxed == 0
        relaxing = dataclasses.replace(plan, relax=0.5, relax_every=10)
        relaxed = stylise(content, shifted, objective, relaxing, temporal=held)
        assert relaxed.converged and relaxed.iterations < 120 and quality(relaxed.losses) <= 1.3 * level
        assert relaxed.relaxed >= 2 and relaxed.temporal_scale == 0.5 ** relaxed.relaxed
        assert score() == before
        carried = stylise(content, shifted, objective, dataclasses.replace(relaxing, temporal_scale=relaxed.temporal_scale),
                          temporal=held)
        assert carried.converged and carried.iterations <= relaxed.iterations / 2
        assert quality(carried.losses) <= 1.3 * level
        floored = stylise(content, shifted, objective, dataclasses.replace(relaxing, relax_floor=0.5 ** (relaxed.relaxed - 1)),
                          temporal=held)   # the floor one step above what the level needed: never relaxed past it
        assert floored.temporal_scale == 0.5 ** (relaxed.relaxed - 1) and floored.relaxed == relaxed.relaxed - 1
        if floored.converged:   # held at the floor, it stops only at the level, or keeps going up to the cap
            assert quality(floored.losses) <= 1.3 * level
        else:
            assert floored.iterations == 120
    finally:
        objective.temporal_weight = 0.0


def test_convergence_stop_ends_early_and_never_exceeds_the_cap(objective):
    content = to_tensor(texture(48, 64, 3))
    capped = stylise(content, content, objective, Plan((((48, 64), 40),)))
    assert capped.iterations == 40 and not capped.converged
    converged_start = capped.image
    early = stylise(content, converged_start, objective, Plan((((48, 64), 200),), tolerance=0.01, tolerance_window=10,
                                                               log_every=5))
    assert early.converged and 10 < early.iterations < 200
    for cap in (7, 13):
        assert stylise(content, content, objective, Plan((((48, 64), cap),), log_every=5)).iterations == cap


def test_precision_auto_is_the_default_and_on_the_cpu_every_cuda_setting_changes_nothing(
        tmp_path, weights_file, style_image, content_image, cli):
    """auto (the default) is strict fp32 on the CPU, and tf32 (CUDA's TF32) computes in fp32 there: their frames
    are fp32's to the bit, and PyTorch's process-wide CUDA switches are left as they were. bf16 runs the network
    under the CPU's autocast: another frame, close to fp32's."""
    import torch

    from pipeline import media

    assert Config().precision == "auto"
    switches = lambda: (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,  # noqa: E731
                        torch.backends.cudnn.benchmark)
    before = switches()
    images = {}
    for precision in ("auto", "fp32", "tf32", "bf16"):
        result = cli(content_image, style_image, tmp_path / f"{precision}.png", "--weights", weights_file, "--size", "48",
                     "--iterations", "3", "--device", "cpu", "--precision", precision, "-q")
        assert result.exit_code == 0, result.stderr
        images[precision] = media.read_image(tmp_path / f"{precision}.png").astype(float)
    assert switches() == before
    assert images["fp32"].shape[1] == 48
    assert np.array_equal(images["auto"], images["fp32"]) and np.array_equal(images["tf32"], images["fp32"])
    difference = np.abs(images["bf16"] - images["fp32"]).mean()
    assert 0 < difference < 20, difference


def test_auto_precision_is_tf32_from_ampere_on_and_strict_fp32_before(monkeypatch):
    import torch

    from pipeline.runtime import resolve_precision

    cuda = torch.device("cuda")
    for capability, expected in (((7, 5), "fp32"), ((8, 0), "tf32"), ((9, 0), "tf32")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert resolve_precision(cuda, "auto") == expected
        assert resolve_precision(cuda, "fp32") == "fp32" and resolve_precision(cuda, "bf16") == "bf16"
    assert resolve_precision(torch.device("cpu"), "auto") == "fp32"


def test_bf16_runs_the_network_in_bf16_and_the_losses_in_fp32_on_the_cpu(objective):
    """Feature Grams are sums of squares that overflow fp16 (neural-style #425): bf16 has fp32's range, and the
    losses, the Grams among them, are computed in fp32 from the bf16 features; the gradient reaching the image is fp32."""
    import torch

    from pipeline.runtime import configure

    seen = []
    hooks = [m.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
             for m in objective.model.modules() if isinstance(m, torch.nn.Conv2d)]
    content = to_tensor(texture(48, 64, 2))
    image = content.clone().requires_grad_(True)
    try:
        objective.autocast_dtype = configure(torch.device("cpu"), "bf16")
        objective.set_content(content)
        total, parts = objective(image)
        total.backward()
    finally:
        objective.autocast_dtype = None
        for hook in hooks:
            hook.remove()
    assert seen and set(seen) == {torch.bfloat16}
    assert total.dtype == torch.float32 and all(v.dtype == torch.float32 for v in parts.values())
    assert objective.style_targets and all(g.dtype == torch.float32 for g in objective.style_targets.values())
    assert image.grad.dtype == torch.float32 and torch.isfinite(image.grad).all()
