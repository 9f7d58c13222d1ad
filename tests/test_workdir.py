"""A job's work directory: its identity refuses another job's frames (naming each change once), output-only
settings may change on a resume, other versions' and strangers' folders are never touched."""
import json

import pytest

from pipeline import video, workdir
from pipeline.config import ConfigError
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
    with pytest.raises(workdir.WorkDirError, match="another version of nst-video"):
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
