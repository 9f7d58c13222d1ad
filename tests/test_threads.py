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
