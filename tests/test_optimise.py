"""The per-frame optimiser: schedules, convergence stop, precision, and the overlapped pipeline."""
import threading
import time

import pytest

from pipeline import media, video
from pipeline.config import Config
from pipeline.losses import Objective
from pipeline.optimise import Plan, stylise, to_tensor
from pipeline.synthetic import MECHANICS_WEIGHTS, moving_clip, random_vgg19_weights, texture, write_frames
from pipeline.threads import Stage, Writer
from pipeline.vgg import VGG19Features

CFG = Config(**MECHANICS_WEIGHTS)


@pytest.fixture(scope="module")
def objective():
    model = VGG19Features(random_vgg19_weights(0), list(CFG.content_layers) + list(CFG.style_layers))
    obj = Objective(model, CFG.content_layers, CFG.style_layers, content_weight=1.0, style_weight=1e5, tv_weight=1.0)
    obj.set_style([to_tensor(texture(64, 64, 9))])
    return obj


def test_multiscale_schedule_visits_the_sizes_asked_for_and_ends_at_size(objective):
    cfg = CFG.replace(size=96, scales=(48, 64, 128), scale_iterations=(4, 3, 5), iterations=15)
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


def test_precisions_are_accepted_and_fp32_is_the_cpu_default(tmp_path, weights_file, style_image, content_image, cli):
    assert Config().precision == "fp32"
    for precision in ("fp32", "tf32", "bf16"):
        result = cli(content_image, style_image, tmp_path / f"{precision}.png", "--weights", weights_file, "--size", "48",
                     "--iterations", "3", "--device", "cpu", "--precision", precision, "-q")
        assert result.exit_code == 0, result.stderr


def test_a_failing_stage_surfaces_its_error_without_hanging():
    def frames():
        yield 1
        yield 2
        raise RuntimeError("decoder exploded at frame 2")

    stage = Stage(frames(), depth=1)
    seen = []
    with pytest.raises(RuntimeError, match="exploded"):
        for item in stage:
            seen.append(item)
    stage.close()
    assert seen == [1, 2]
    endless = Stage(iter(range(10**9)), depth=2)   # a consumer that stops early must not leave a stuck thread
    next(iter(endless))
    started = time.time()
    endless.close()
    assert time.time() - started < 5 and not any(t.name == "stage" and t.is_alive() for t in threading.enumerate())


def test_writer_keeps_order_and_reports_errors():
    written = []
    writer = Writer(depth=2)
    for i in range(20):
        writer.submit(written.append, i)
    writer.close()
    assert written == list(range(20))
    failing = Writer(depth=2)
    failing.submit(lambda: (_ for _ in ()).throw(OSError("disk gone")))
    with pytest.raises(OSError, match="disk gone"):
        for _ in range(10):
            failing.submit(lambda: None)
        failing.close()


def test_pipeline_writes_every_frame_in_order_and_fails_cleanly(tmp_path, weights_file, style_image, monkeypatch):
    frames = write_frames(moving_clip(frames=6, width=64, height=48).frames, tmp_path / "in")
    cfg = Config(weights=str(weights_file), size=64, iterations=4, frame_iterations=2, device="cpu", **MECHANICS_WEIGHTS)
    summary = video.run(video.Job(frames, (style_image,), tmp_path / "out.mp4"), cfg)
    assert summary.frames == 6 and media.probe_video(tmp_path / "out.mp4").frames == 6
    original = media.read_image

    def broken(path):
        if str(path).endswith("frame_3.png"):
            raise media.MediaError(f"{path} is not a readable image")
        return original(path)

    monkeypatch.setattr(media, "read_image", broken)
    started = time.time()
    with pytest.raises(media.MediaError, match="frame_3.png"):
        video.run(video.Job(frames, (style_image,), tmp_path / "fail.mp4"), cfg)
    assert time.time() - started < 60 and not (tmp_path / "fail.mp4").exists()
    assert not list(tmp_path.glob(".fail.partial*"))


def test_memory_estimate_refuses_a_frame_that_cannot_fit(tmp_path, weights_file, style_image, content_image,
                                                         monkeypatch):
    from pipeline import memory, runtime

    monkeypatch.setattr(runtime, "available_memory", lambda device: 600 * 2**20)
    with pytest.raises(video.NSTError, match=r"needs about .* GiB.*use --size \d+ or less"):
        video.run(video.Job(content_image, (style_image,), tmp_path / "o.png"),
                  Config(weights=str(weights_file), size=1024, device="cpu"))
    cfg = Config()
    assert memory.peak_bytes(1080, 1920, cfg) < 24 * 2**30 < memory.peak_bytes(2160, 3840, cfg)
    assert memory.largest_fitting_size(1080, 1920, cfg, 2 * 2**30) < 1920


def test_bench_runs_end_to_end_at_tiny_sizes(cli, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text("iterations: 6\nframe_iterations: 2\nscales: [32]\nscale_iterations: [3]\n")
    result = cli("bench", "--sizes", "48", "--frames", "3", "--clip-size", "48", "--reference-evaluations", "3",
                 "--config", config, "--device", "cpu", "--json", tmp_path / "bench.json")
    assert result.exit_code == 0, result.stderr
    import json

    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["overhead"][0]["ratio"] > 0 and report["image"][0]["speedup"] > 0
    assert report["clip"]["frames"] == 3 and report["clip"]["reference_seconds"] > 0
    result = cli("bench", "flicker", "--frames", "3", "--size", "40", "--iterations", "3", "--json", tmp_path / "f.json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads((tmp_path / "f.json").read_text())
    assert [r["name"] for r in rows] == ["cold", "plain", "flow", "temporal", "long-term"]
