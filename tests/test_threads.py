"""The overlapped pipeline: stages and the writer keep order, surface errors and never hang."""
import threading
import time

import pytest

from pipeline import media, probe, video
from pipeline.config import Config
from pipeline.synthetic import MECHANICS_WEIGHTS, moving_clip, write_frames
from pipeline.threads import Stage, Writer


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
    assert summary.frames == 6 and probe.probe_video(tmp_path / "out.mp4").frames == 6
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


def test_writer_flush_waits_for_every_call_and_goes_on():
    done = []
    writer = Writer(depth=4)
    for i in range(3):
        writer.submit(lambda i=i: (time.sleep(0.05), done.append(i)))
    writer.flush()
    assert done == [0, 1, 2]                 # a shot's sweeps may now read every frame it saved
    writer.submit(done.append, 3)
    writer.close()
    assert done == [0, 1, 2, 3]


def test_the_idle_fraction_is_the_time_the_optimiser_waited(tmp_path, weights_file, style_image, monkeypatch):
    """A decoder slower than the optimiser shows as idle time in the summary; a fast one does not."""
    frames = write_frames(moving_clip(frames=5, width=64, height=48).frames, tmp_path / "in")
    cfg = Config(weights=str(weights_file), size=64, iterations=2, frame_iterations=1, device="cpu", **MECHANICS_WEIGHTS)
    fast = video.run(video.Job(frames, (style_image,), tmp_path / "fast"), cfg)
    original = media.read_image

    def slow(path):
        time.sleep(1.0)
        return original(path)

    monkeypatch.setattr(media, "read_image", slow)
    slowed = video.run(video.Job(frames, (style_image,), tmp_path / "slow"), cfg)
    assert slowed.idle_fraction > 0.5 > fast.idle_fraction
