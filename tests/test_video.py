"""The frame loop: warm start, optical flow, temporal loss, scene cuts, multi-pass."""
from pathlib import Path

import numpy as np
import pytest

from pipeline import media, video
from pipeline.config import Config
from pipeline.synthetic import MECHANICS_WEIGHTS, moving_clip, write_frames


def small(weights_file, **changes) -> Config:
    values = dict(weights=str(weights_file), size=64, iterations=12, frame_iterations=4, device="cpu",
                  tolerance=0.0, **MECHANICS_WEIGHTS)  # no convergence stop: iteration counts are exact
    values.update(changes)
    return Config(**values)


def run_job(source, style, output, cfg, **job):
    events = []
    summary = video.run(video.Job(Path(source), (Path(style),), Path(output), **job), cfg, events=events.append)
    return summary, events


@pytest.fixture(scope="module")
def synthetic_frames(tmp_path_factory):
    clip = moving_clip(frames=5, width=96, height=64)
    return write_frames(clip.frames, tmp_path_factory.mktemp("synthetic") / "frames")


def test_warm_start_begins_far_below_a_cold_start(tmp_path, weights_file, style_image, synthetic_frames):
    warm, _ = run_job(synthetic_frames, style_image, tmp_path / "warm", small(weights_file, flow=False, iterations=40))
    cold, _ = run_job(synthetic_frames, style_image, tmp_path / "cold",
                      small(weights_file, warm_start=False, iterations=40))
    # frame 1's loss at its first iteration: from frame 0's result vs from the content frame
    assert warm.histories[1][0]["total"] < 0.4 * cold.histories[1][0]["total"]
    assert warm.iterations[0] == 40 and warm.iterations[1:] == [4] * 4
    assert cold.iterations == [40] * 5


def test_frames_are_written_in_order_with_events(tmp_path, weights_file, style_image, synthetic_frames):
    summary, events = run_job(synthetic_frames, style_image, tmp_path / "out", small(weights_file))
    done = [e.index for e in events if isinstance(e, video.FrameDone)]
    assert done == [0, 1, 2, 3, 4] and summary.frames == 5 and summary.stylised == 5
    assert isinstance(events[0], video.Started) and events[0].total == 5
    written = sorted((tmp_path / "out").glob("*.png"))
    assert [p.name for p in written] == [f"{i:06d}.png" for i in range(5)]
    assert 0.0 <= summary.idle_fraction <= 1.0 and summary.peak_memory > 0


def _truth_error(folder: Path, clip) -> float:
    from pipeline.metrics import truth_error

    frames = [media.read_image(p) for p in sorted(folder.glob("*.png"))]
    return truth_error(frames, clip.backward, clip.visible)


def test_flow_warped_start_flickers_less_than_plain_warm_start(tmp_path, weights_file, style_image):
    clip = moving_clip(frames=6, width=96, height=64)
    source = write_frames(clip.frames, tmp_path / "in")
    errors = {}
    for name, changes in {"plain": dict(flow=False), "flow": dict(temporal_weight=0.0), "temporal": {}}.items():
        run_job(source, style_image, tmp_path / name,
                small(weights_file, size=96, iterations=30, frame_iterations=10, **changes))
        errors[name] = _truth_error(tmp_path / name, clip)
    assert errors["temporal"] < errors["flow"] < errors["plain"]


def test_a_scene_cut_restarts_cold(tmp_path, weights_file, style_image):
    first = moving_clip(frames=3, width=96, height=64, seed=1).frames
    second = [255 - f for f in moving_clip(frames=3, width=96, height=64, seed=7).frames]
    blank = [np.zeros_like(first[0])]
    source = write_frames(first + second + blank, tmp_path / "in")
    summary, events = run_job(source, style_image, tmp_path / "out", small(weights_file))
    assert summary.cuts == [3, 6]
    assert summary.iterations == [12, 4, 4, 12, 4, 4, 12]       # cold frames get the first-frame iterations
    cuts = [e.index for e in events if isinstance(e, video.FrameDone) and e.cut]
    assert cuts == [3, 6]


def test_no_flow_long_term_noise_fill_and_multipass(tmp_path, weights_file, style_image, synthetic_frames):
    for name, changes in {"long": dict(long_term=2), "noise": dict(unreliable_init="noise"),
                          "farneback": dict(flow_method="farneback"), "nofl": dict(flow=False)}.items():
        summary, _ = run_job(synthetic_frames, style_image, tmp_path / name, small(weights_file, **changes))
        assert summary.frames == 5 and len(list((tmp_path / name).glob("*.png"))) == 5
    summary, events = run_job(synthetic_frames, style_image, tmp_path / "passes",
                              small(weights_file, passes=3, pass_iterations=2))
    passes = [(e.pass_number, e.index) for e in events if isinstance(e, video.FrameDone)]
    assert passes[:5] == [(1, i) for i in range(5)]
    assert passes[5:10] == [(2, i) for i in (4, 3, 2, 1, 0)]        # backward sweep
    assert passes[10:] == [(3, i) for i in range(5)]                 # forward again
    assert summary.frames == 5 and len(list((tmp_path / "passes").glob("*.png"))) == 5


def test_multipass_resumes_inside_a_later_pass(tmp_path, weights_file, style_image, synthetic_frames, monkeypatch):
    cfg = small(weights_file, passes=2, pass_iterations=2)
    reference, _ = run_job(synthetic_frames, style_image, tmp_path / "ref", cfg)
    calls = {"n": 0}
    real = video.Stylist.run

    def dies(self, index, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:  # pass 2, third frame of the backward sweep
            raise KeyboardInterrupt
        return real(self, index, *args, **kwargs)

    monkeypatch.setattr(video.Stylist, "run", dies)
    with pytest.raises(KeyboardInterrupt):
        run_job(synthetic_frames, style_image, tmp_path / "out", cfg)
    monkeypatch.setattr(video.Stylist, "run", real)
    resumed, _ = run_job(synthetic_frames, style_image, tmp_path / "out", cfg)
    assert resumed.stylised == 3                                     # only what pass 2 had left
    for a, b in zip(sorted((tmp_path / "ref").glob("*.png")), sorted((tmp_path / "out").glob("*.png"))):
        assert np.array_equal(media.read_image(a), media.read_image(b))


# ---- eval --------------------------------------------------------------------------------------------

def test_eval_of_an_unchanged_clip_is_zero_and_of_itself_equals_the_floor(cli, tmp_path):
    still = [moving_clip(frames=1, width=96, height=64).frames[0]] * 5
    source = write_frames(still, tmp_path / "still")
    result = cli("eval", source, source, "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.stderr
    import json

    figures = json.loads((tmp_path / "e.json").read_text())
    assert figures["temporal_error"] < 0.01 and figures["frames"] == 5
    moving = write_frames(moving_clip(frames=5, width=96, height=64).frames, tmp_path / "moving")
    result = cli("eval", moving, moving, "--json", tmp_path / "m.json", "--csv", tmp_path / "m.csv",
                 "--plot", tmp_path / "m.png")
    figures = json.loads((tmp_path / "m.json").read_text())
    assert result.exit_code == 0 and figures["temporal_error"] == pytest.approx(figures["original_floor"])
    assert len((tmp_path / "m.csv").read_text().splitlines()) == 5 and (tmp_path / "m.png").exists()


def test_eval_of_a_stylised_clip_with_style_loss(cli, tmp_path, weights_file, style_image, synthetic_frames):
    run_job(synthetic_frames, style_image, tmp_path / "styled", small(weights_file))
    result = cli("eval", tmp_path / "styled", synthetic_frames, "--style", style_image, "--weights", weights_file,
                 "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert "temporal error (RMSE, 0-255):" in result.stdout and "style loss" in result.stdout
    assert "compared at 64x42" in result.stderr               # sizes differ: ORIGINAL resampled, with a warning


def test_eval_bad_input(cli, tmp_path, clip, content_image):
    short = write_frames(moving_clip(frames=3, width=96, height=64).frames, tmp_path / "short")
    longer = write_frames(moving_clip(frames=4, width=96, height=64).frames, tmp_path / "longer")
    result = cli("eval", short, longer)
    assert result.exit_code == 1 and "different frame counts" in result.stderr
    result = cli("eval", content_image, clip)
    assert result.exit_code == 1 and "has one frame" in result.stderr
    tall = write_frames([np.zeros((96, 64, 3), np.uint8)] * 3, tmp_path / "tall")
    result = cli("eval", short, tall)
    assert result.exit_code == 1 and "different shapes" in result.stderr
    result = cli("eval", short, short, "--json", tmp_path / "x.txt")
    assert result.exit_code == 2 and "must end in .json" in result.stderr


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_the_cuda_layout_runs_and_matches(tmp_path, weights_file, style_image, synthetic_frames, monkeypatch,
                                          optimizer):
    """On CUDA the model runs channels_last; the same layout here (coarse scales and the temporal loss
    included) must run with both optimisers and give the frames the NCHW model gives."""
    from pipeline import runtime

    cfg = small(weights_file, optimizer=optimizer, scales=(32,), scale_iterations=(4,))
    plain, _ = run_job(synthetic_frames, style_image, tmp_path / "nchw", cfg)
    monkeypatch.setattr(runtime, "channels_last", lambda device: True)
    nhwc, _ = run_job(synthetic_frames, style_image, tmp_path / "nhwc", cfg)
    assert nhwc.iterations == plain.iterations
    for a, b in zip(sorted((tmp_path / "nchw").glob("*.png")), sorted((tmp_path / "nhwc").glob("*.png"))):
        difference = np.abs(media.read_image(a).astype(float) - media.read_image(b).astype(float))
        assert difference.mean() < 1.0, (a.name, difference.mean())
