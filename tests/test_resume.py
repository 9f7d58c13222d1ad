"""Overnight robustness with real processes: kill -9 and resume gives the same frames, SIGTERM stops cleanly,
damaged files are redone, changed jobs are refused, batches survive a bad job."""
import json
import shutil
import signal
import subprocess

import numpy as np
import pytest

from pipeline import media, probe, stylist, video, workdir
from pipeline.config import Config
from pipeline.synthetic import MECHANICS_WEIGHTS
from pipeline.events import Notice
from tests.conftest import command, frames_of, killed_after, run, wait_for_frames
from pipeline.errors import NSTError, NonFiniteLoss

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, frames_dir, weights_file, style_image):
    out = tmp_path_factory.mktemp("reference") / "out"
    result = run(command(frames_dir, style_image, out, weights_file))
    assert result.returncode == 0, result.stderr
    return frames_of(out)


def test_sigkill_then_rerun_gives_the_same_frames(tmp_path, frames_dir, weights_file, style_image, uninterrupted):
    out = tmp_path / "out"
    work = workdir.default_work_dir(out)
    killed_after(4, command(frames_dir, style_image, out, weights_file), work)
    assert not out.exists()                                   # nothing at OUTPUT after a kill
    kept = len(list((work / "frames").glob("*.png")))
    assert 4 <= kept < 14
    result = run(command(frames_dir, style_image, out, weights_file, "--log", tmp_path / "log.jsonl"))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    started = next(e for e in events if e["event"] == "started")
    assert started["resumed"] >= kept - 1
    assert any(e["event"] == "warning" and "left by earlier runs that died" in e["message"] for e in events)
    resumed_frames = frames_of(out)
    assert len(resumed_frames) == len(uninterrupted) == 14
    for a, b in zip(resumed_frames, uninterrupted):
        assert np.array_equal(a, b)                           # bit-identical on the CPU
    assert not work.exists()                                  # removed once OUTPUT is complete


def test_sigkill_while_encoding_then_rerun_leaves_exactly_output(tmp_path, frames_dir, weights_file, style_image):
    folder = tmp_path / "renders"
    out = folder / "out.mp4"
    killed_after(3, command(frames_dir, style_image, out, weights_file), workdir.default_work_dir(out))
    leftovers = [p.name for p in folder.iterdir() if ".partial-" in p.name]
    assert leftovers and not out.exists()  # the killed encoder's temporary file, never OUTPUT
    result = run(command(frames_dir, style_image, out, weights_file))
    assert result.returncode == 0, result.stderr
    assert "removed 1 temporary file left by earlier runs that died" in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == [".out.mp4.nst-video.json", "out.mp4"]  # and its record
    assert probe.probe_video(out).frames == 14


def test_sigterm_stops_after_the_frame_and_resumes(tmp_path, frames_dir, weights_file, style_image, uninterrupted):
    out = tmp_path / "out.mkv"
    work = workdir.default_work_dir(out)
    process = subprocess.Popen(command(frames_dir, style_image, out, weights_file, "--keep-work"),
                               stderr=subprocess.PIPE, text=True)
    wait_for_frames(work, 3, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143
    assert "Run the same command again to resume" in stderr and "Traceback" not in stderr
    assert not out.exists() and not list(tmp_path.glob(".out.partial*"))
    result = run(command(frames_dir, style_image, out, weights_file, "--keep-work"))
    assert result.returncode == 0, result.stderr
    assert sum(1 for _ in media.FrameReader(probe.inspect_input(out), (64, 42))) == 14
    assert [np.array_equal(a, b) for a, b in zip(frames_of(work / "frames"), uninterrupted)] == [True] * 14
    log = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    assert sorted(r["index"] for r in log) == list(range(14))   # every frame logged once


def _small(weights_file, **changes):
    return Config(**{**dict(weights=str(weights_file), size=64, iterations=10, frame_iterations=6, device="cpu",
                            seed=5, **MECHANICS_WEIGHTS), **changes})


def test_a_damaged_frame_file_is_redone(tmp_path, frames_dir, weights_file, style_image, uninterrupted):
    out = tmp_path / "out"
    job = video.Job(frames_dir, (style_image,), out, keep_work=True)
    video.run(job, _small(weights_file))
    work = workdir.default_work_dir(out)
    damaged = work / "frames" / "000006.png"
    damaged.write_bytes(damaged.read_bytes()[:100])          # a half-written file
    (work / "frames" / "000011.png").unlink()
    events = []
    summary = video.run(job, _small(weights_file), events=events.append)
    assert summary.resumed == 6 and summary.stylised == 8        # frames 6.. redone
    assert [np.array_equal(a, b) for a, b in zip(frames_of(out), uninterrupted)] == [True] * 14
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert any(m.startswith("frame 7 saved in the work directory (000006.png) is damaged") for m in notices), notices
    # The weights are known by their bytes: the same file at another path is the same job.
    copy = tmp_path / "elsewhere" / "vgg19-copy.pth"
    copy.parent.mkdir()
    shutil.copyfile(weights_file, copy)
    assert video.run(job, _small(copy)).resumed == 14


def test_disk_full_stops_cleanly_and_keeps_the_work(tmp_path, frames_dir, weights_file, style_image, monkeypatch):
    import errno

    out = tmp_path / "out.mp4"
    original = workdir.WorkDir.save_frame
    calls = []

    def full_disk(self, index, frame):
        calls.append(index)
        if index == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, index, frame)

    monkeypatch.setattr(workdir.WorkDir, "save_frame", full_disk)
    with pytest.raises(NSTError, match="disk full: .* finished frames are kept"):
        video.run(video.Job(frames_dir, (style_image,), out), _small(weights_file))
    assert not out.exists()
    assert len(list((workdir.default_work_dir(out) / "frames").glob("*.png"))) == 5
    monkeypatch.setattr(workdir.WorkDir, "save_frame", original)
    summary = video.run(video.Job(frames_dir, (style_image,), out), _small(weights_file))
    assert summary.resumed == 5 and out.exists()


def test_not_enough_disk_is_refused_up_front(tmp_path, frames_dir, weights_file, style_image, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(NSTError, match="not enough disk space"):
        video.run(video.Job(frames_dir, (style_image,), tmp_path / "out"), _small(weights_file))


def test_non_finite_loss_restarts_the_frame_with_adam(tmp_path, frames_dir, weights_file, style_image, monkeypatch):
    from pipeline import optimise

    real = optimise.stylise
    failures = []

    def flaky(content, init, objective, plan, **kwargs):
        if kwargs.get("frame") == 2 and plan.optimizer == "lbfgs":
            failures.append(2)
            raise NonFiniteLoss("frame 2: the loss became nan at iteration 3")
        return real(content, init, objective, plan, **kwargs)

    monkeypatch.setattr(stylist, "stylise", flaky)
    events = []
    summary = video.run(video.Job(frames_dir, (style_image,), tmp_path / "out"), _small(weights_file),
                        events=events.append)
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert failures == [2] and summary.frames == 14
    assert any("restarting frame 2 with Adam" in n for n in notices)

    def always(content, init, objective, plan, **kwargs):
        if kwargs.get("frame") == 3:
            raise NonFiniteLoss("frame 3: the loss became nan at iteration 1")
        return real(content, init, objective, plan, **kwargs)

    monkeypatch.setattr(stylist, "stylise", always)
    with pytest.raises(NSTError, match="frame 3 failed twice"):
        video.run(video.Job(frames_dir, (style_image,), tmp_path / "out2"), _small(weights_file))


# ---- batches ----------------------------------------------------------------------------------------
