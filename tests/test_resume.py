"""Overnight robustness with real processes: kill -9 and resume gives the same frames, SIGTERM stops cleanly,
damaged files are redone, changed jobs are refused, batches survive a bad job."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import media, video, workdir
from pipeline.config import Config
from pipeline.synthetic import MECHANICS_WEIGHTS, moving_clip, write_frames
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
ARGS = ["--size", "64", "--iterations", "10", "--frame-iterations", "6", "--device", "cpu", "--seed", "5", "-q",
        "--content-weight", "1", "--style-weight", "1e5", "--tv-weight", "1", "--temporal-weight", "4e3"]


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    return write_frames(moving_clip(frames=14, width=96, height=64).frames, tmp_path_factory.mktemp("clip") / "in")


def command(source, style, output, weights, *extra):
    return [sys.executable, str(ROOT / "cli.py"), str(source), str(style), str(output), "--weights", str(weights),
            *ARGS, *map(str, extra)]


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)


def frames_of(folder: Path) -> list[np.ndarray]:
    return [media.read_image(p) for p in sorted(folder.glob("*.png"))]


def killed_after(frames: int, args: list[str], work: Path) -> None:
    """Start a run in a real process and kill -9 it once `frames` frames are finished."""
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    wait_for_frames(work, frames, process)
    process.kill()
    process.wait()


def wait_for_frames(work: Path, count: int, process: subprocess.Popen, limit: float = 120) -> None:
    deadline = time.time() + limit
    while time.time() < deadline:
        if len(list((work / "frames").glob("*.png"))) >= count:
            return
        if process.poll() is not None:
            raise AssertionError(f"run ended early: {process.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError("no frames appeared")


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
    assert [p.name for p in folder.iterdir()] == ["out.mp4"]
    assert media.probe_video(out).frames == 14


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
    assert sum(1 for _ in media.FrameReader(media.inspect_input(out), (64, 42))) == 14
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
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(out), uninterrupted))


def test_a_changed_job_is_refused_without_restart(tmp_path, frames_dir, weights_file, style_image):
    out = tmp_path / "out"
    work = workdir.default_work_dir(out)
    killed_after(2, command(frames_dir, style_image, out, weights_file), work)
    result = run(command(frames_dir, style_image, out, weights_file, "--style-weight", "2e5"))
    assert result.returncode == 2 and "holds another job (changed: style_weight 100000.0 -> 200000.0)" in result.stderr
    assert "--restart" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = run(command(frames_dir, style_image, out, weights_file, "--iterations", "8", "--size", "48"))
    assert result.returncode == 2 and "(changed: iterations 10 -> 8, size 64 -> 48)" in result.stderr  # each once
    result = run(command(frames_dir, style_image, out, weights_file, "--style-weight", "2e5", "--restart", "--crf", "30"))
    assert result.returncode == 0 and len(frames_of(out)) == 14


def test_output_settings_may_change_on_resume(tmp_path, frames_dir, weights_file, style_image):
    out = tmp_path / "out.mp4"
    video.run(video.Job(frames_dir, (style_image,), out, keep_work=True), _small(weights_file))
    summary = video.run(video.Job(frames_dir, (style_image,), out), _small(weights_file, crf=35, codec="h265"))
    assert summary.resumed == 14 and summary.stylised == 0 and out.exists()


def test_work_directory_of_another_version_or_unusable(tmp_path, frames_dir, weights_file, style_image):
    out = tmp_path / "out"
    work = workdir.default_work_dir(out)
    work.mkdir()
    (work / "job.json").write_text(json.dumps({"format": 999, "hash": "x"}))
    with pytest.raises(workdir.WorkDirError, match="another version of nst-video"):
        video.run(video.Job(frames_dir, (style_image,), out), _small(weights_file))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(workdir.WorkDirError, match="cannot use work directory"):
        video.run(video.Job(frames_dir, (style_image,), out, work_dir=blocker / "work"), _small(weights_file))
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "thesis.tex").write_text("precious")
    with pytest.raises(workdir.WorkDirError, match="not an nst-video work directory"):
        video.run(video.Job(frames_dir, (style_image,), out, work_dir=stranger, restart=True), _small(weights_file))
    assert (stranger / "thesis.tex").exists()


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
    with pytest.raises(video.NSTError, match="disk full: .* finished frames are kept"):
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
    with pytest.raises(video.NSTError, match="not enough disk space"):
        video.run(video.Job(frames_dir, (style_image,), tmp_path / "out"), _small(weights_file))


def test_non_finite_loss_restarts_the_frame_with_adam(tmp_path, frames_dir, weights_file, style_image, monkeypatch):
    from pipeline import optimise

    real = optimise.stylise
    failures = []

    def flaky(content, init, objective, plan, **kwargs):
        if kwargs.get("frame") == 2 and plan.optimizer == "lbfgs":
            failures.append(2)
            raise optimise.NonFiniteLoss("frame 2: the loss became nan at iteration 3")
        return real(content, init, objective, plan, **kwargs)

    monkeypatch.setattr(video, "stylise", flaky)
    events = []
    summary = video.run(video.Job(frames_dir, (style_image,), tmp_path / "out"), _small(weights_file),
                        events=events.append)
    notices = [e.message for e in events if isinstance(e, video.Notice)]
    assert failures == [2] and summary.frames == 14
    assert any("restarting frame 2 with Adam" in n for n in notices)

    def always(content, init, objective, plan, **kwargs):
        if kwargs.get("frame") == 3:
            raise optimise.NonFiniteLoss("frame 3: the loss became nan at iteration 1")
        return real(content, init, objective, plan, **kwargs)

    monkeypatch.setattr(video, "stylise", always)
    with pytest.raises(video.NSTError, match="frame 3 failed twice"):
        video.run(video.Job(frames_dir, (style_image,), tmp_path / "out2"), _small(weights_file))


# ---- batches ----------------------------------------------------------------------------------------

def batch_command(spec, weights, *extra):
    return [sys.executable, str(ROOT / "cli.py"), "batch", str(spec), "--weights", str(weights), *ARGS,
            *map(str, extra)]


def test_batch_runs_jobs_goes_on_after_a_failure_and_skips_finished(tmp_path, frames_dir, weights_file, style_image):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(f"""
jobs:
  - input: {frames_dir}
    style: {style_image}
    output: out/a
  - input: {broken}
    style: [{style_image}]
    output: out/b.mp4
  - input: {frames_dir}
    style: {style_image}
    output: out/c.mkv
    size: 48
    frame_iterations: 3
""")
    result = run(batch_command(jobs, weights_file))
    assert result.returncode == 1
    assert (tmp_path / "out" / "a").is_dir() and (tmp_path / "out" / "c.mkv").exists()
    assert not (tmp_path / "out" / "b.mp4").exists()
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["job", "input", "device"]
    assert "done" in lines[1] and "failed" in lines[2] and "done" in lines[3]
    assert media.read_image(next((tmp_path / "out" / "a").glob("*.png"))).shape[1] == 64
    again = run(batch_command(jobs, weights_file))
    assert "skipped" in again.stdout.splitlines()[1] and "skipped" in again.stdout.splitlines()[3]


def test_batch_validation_lists_every_problem_and_starts_nothing(tmp_path, weights_file, style_image, frames_dir):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(f"""
jobs:
  - input: {frames_dir}
    style: {style_image}
    output: out/same.mp4
  - input: missing.mp4
    style: {style_image}
    output: out/x.mp4
  - input: {frames_dir}
    output: out/y.mp4
  - input: {frames_dir}
    style: nostyle.png
    output: out/same.mp4
    sise: 3
""")
    result = run(batch_command(jobs, weights_file))
    assert result.returncode == 2
    for problem in ["input", "missing.mp4 does not exist", "job 3: missing style", "nostyle.png does not exist",
                    "also the output of job 1", "unknown key sise"]:
        assert problem in result.stderr, problem
    assert not (tmp_path / "out").exists()
    jobs.write_text("jobs: [\n")
    result = run(batch_command(jobs, weights_file))
    assert result.returncode == 2 and "is not valid YAML" in result.stderr
    jobs.write_text("items: []\n")
    result = run(batch_command(jobs, weights_file))
    assert result.returncode == 2 and "top-level `jobs:` list" in result.stderr


def test_batch_glob_on_two_cpu_workers_runs_each_job_once(tmp_path, weights_file, style_image):
    clips = tmp_path / "clips"
    clips.mkdir()
    for index in range(3):
        frames = moving_clip(frames=3, width=64, height=48, seed=index).frames
        write_frames(frames, clips / f"shot{index}")
    log = tmp_path / "batch.jsonl"
    result = run(batch_command(f"{clips}/shot*", weights_file, "--style", style_image, "--out-dir", tmp_path / "out",
                               "--devices", "cpu,cpu", "--log", log))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["shot0", "shot1", "shot2"]
    finished = [json.loads(line) for line in log.read_text().splitlines()]
    jobs = sorted(e["job"] for e in finished if e["event"] == "job")
    assert jobs == [1, 2, 3]                                  # each exactly once
    assert {e["device"] for e in finished if e["event"] == "job"} <= {"cpu"}


def test_batch_devices_must_exist(tmp_path, weights_file, style_image, frames_dir):
    result = run(batch_command(f"{frames_dir}", weights_file, "--style", style_image, "--out-dir", tmp_path,
                               "--devices", "7"))
    assert result.returncode == 2 and "no GPU 7" in result.stderr
