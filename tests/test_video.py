"""The frame loop: warm start, optical flow, temporal loss, scene cuts, multi-pass."""
from pathlib import Path

import numpy as np
import pytest

from pipeline import media, video
from pipeline.config import Config
from pipeline.synthetic import MECHANICS_WEIGHTS, moving_clip, write_frames


def small(weights_file, **changes) -> Config:
    values = dict(weights=str(weights_file), size=64, iterations=12, frame_iterations=4, device="cpu",
                  **MECHANICS_WEIGHTS)
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
    written = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in written] == [f"{i:06d}.png" for i in range(5)]
    assert 0.0 <= summary.idle_fraction <= 1.0 and summary.peak_memory > 0
