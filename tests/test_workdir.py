"""A job's work directory: its identity refuses another job's frames (naming each change once), output-only
settings may change on a resume, other versions' and strangers' folders are never touched."""
import json
import subprocess
import time

import pytest

from pipeline import video, workdir
from pipeline.errors import ConfigError, WorkDirError
from pipeline.events import FrameDone
from tests.conftest import command, frames_of, killed_after, run
from tests.test_resume import _small


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
    with pytest.raises(WorkDirError, match="another version of nst-video"):
        video.run(video.Job(frames_dir, (style_image,), out), _small(weights_file))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot create work directory .*is a file"):
        video.run(video.Job(frames_dir, (style_image,), out, work_dir=blocker / "work"), _small(weights_file))
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="not an nst-video work directory"):
        video.run(video.Job(frames_dir, (style_image,), out, work_dir=stranger, restart=True), _small(weights_file))
    assert (stranger / "thesis.tex").exists()


def test_a_work_directory_that_holds_the_output_is_refused_and_the_render_survives(tmp_path, clip, style_image,
                                                                                    weights_file):
    """--work-dir that is OUTPUT's folder, or a folder OUTPUT lies in, would be removed with the render in it."""
    render = tmp_path / "out" / "W" / "x.mp4"
    video.run(video.Job(clip, (style_image,), render), _small(weights_file, frame_iterations=2))
    before = render.read_bytes()
    for work in (render.parent, tmp_path / "out"):
        result = run(command(clip, style_image, render, weights_file, "--work-dir", work, "--overwrite"))
        assert result.returncode == 2, result.stderr
        assert "--work-dir" in result.stderr or "work directory" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert render.read_bytes() == before   # byte for byte
    folder_out = tmp_path / "frames-out"
    result = run(command(clip, style_image, folder_out, weights_file, "--work-dir", folder_out / "work"))
    assert result.returncode == 2 and not folder_out.exists()  # refused before frame 0, not after the last


def test_a_run_removes_only_what_it_wrote_from_a_work_directory_it_was_given(tmp_path, clip, style_image,
                                                                              weights_file):
    work = tmp_path / "scratch"
    work.mkdir()
    mine = work / "notes.txt"

    def add_a_file(event):  # the user saves a file into the work directory while the run goes on
        if isinstance(event, FrameDone) and not mine.exists():
            mine.write_text("precious")

    video.run(video.Job(clip, (style_image,), tmp_path / "out.mp4", work_dir=work), _small(weights_file),
              events=add_a_file)
    assert mine.read_text() == "precious" and sorted(p.name for p in work.iterdir()) == ["notes.txt"]


def test_a_second_launch_of_a_running_job_is_refused_and_harms_nothing(tmp_path, clip, style_image, weights_file):
    out = tmp_path / "out.mp4"
    work = workdir.default_work_dir(out)
    slow = ("--iterations", "40")  # a first frame that lasts while the second starts
    first = subprocess.Popen(command(clip, style_image, out, weights_file, *slow), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while workdir.holder(work) != first.pid:  # the first holds the lock, on its first frame
            assert time.time() < deadline and first.poll() is None, first.communicate()[1]
            time.sleep(0.05)
        second = run(command(clip, style_image, out, weights_file, *slow))
        assert second.returncode == 2, second.stderr
        assert f"another nst-video run (pid {first.pid}) is using {work}" in second.stderr
        assert (work / "lock").exists() and (work / "job.json").exists()
    finally:
        _, errors = first.communicate(timeout=300)
    assert first.returncode == 0, errors
    assert out.exists() and not work.exists()


def test_a_log_inside_the_work_directory_is_refused_before_any_work(tmp_path, clip, style_image, weights_file):
    out = tmp_path / "out.mp4"
    for log in (workdir.default_work_dir(out) / "my.log", tmp_path / "scratch" / "log.jsonl"):
        result = run(command(clip, style_image, out, weights_file, "--work-dir", tmp_path / "scratch", "--log", log)
                     if log.parent.name == "scratch" else command(clip, style_image, out, weights_file, "--log", log))
        assert result.returncode == 2 and "--log" in result.stderr and "Traceback" not in result.stderr
        assert not out.exists() and not log.exists() and not log.parent.exists()


def test_a_read_only_work_directory_is_refused_before_any_work(tmp_path, clip, style_image, weights_file, tmpfs):
    locked = tmpfs(tmp_path / "ro", read_only=True)
    out = tmp_path / "out.mp4"
    for work in (locked, locked / "work"):
        result = run(command(clip, style_image, out, weights_file, "--work-dir", work))
        assert result.returncode == 2 and "is not writable" in result.stderr, result.stderr
        assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_the_frame_log_has_one_schema_read_back_as_written(tmp_path):
    """Every line of log.jsonl is a FrameRecord: what the run writes is what a resume, status and the report read,
    the file keeps its "pass" key, an older line without the newer keys reads with their defaults, and a line that
    is no frame record (no index) is left out, as is a line cut by a kill."""
    work = workdir.WorkDir(tmp_path / "w")
    work.path.mkdir()
    written = workdir.FrameRecord(3, 2, 17, {"content": 1.5, "style": 0.25}, 0.5, cut=True, converged=True,
                                  reliable=0.9, probe=2.0, contrast=0.8, temporal_scale=0.49, relaxed=2)
    work.log(written)
    work.log(workdir.FrameRecord(3, 1, 40, {"content": 2.0}, 1.0, reference=True))
    with open(work.path / "log.jsonl", "a") as handle:
        handle.write(json.dumps({"index": 4, "pass": 1, "iterations": 9, "losses": {"style": 1.0}}) + "\n")
        handle.write(json.dumps({"event": "not a frame"}) + "\n" + '{"index": 5, "pa')
    lines = [json.loads(line) for line in (work.path / "log.jsonl").read_text().splitlines()[:3]]
    assert lines[0]["pass"] == 2 and "pass_number" not in lines[0] and lines[0]["time"] > 0
    records, damaged = workdir.read_log(work.path / "log.jsonl")
    assert damaged and [r.index for r in records] == [3, 3, 4]
    assert records[0] == written and records[0].quality == 1.75      # the time it was logged included
    assert records[1].reference and not records[1].cut and records[1].pass_number == 1
    old = records[2]
    assert (old.pass_number, old.iterations, old.temporal_scale, old.relaxed, old.reliable, old.burn_in) == (1, 9, 1.0, 0, None, False)
    work.drop_records(lambda r: r.reference)
    assert [(r.index, r.reference) for r in work.read_log()] == [(3, False), (4, False)]
