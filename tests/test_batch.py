"""Batches never destroy a user's files: an output that is a job's own input or style, or another job's, is
refused before anything starts, however it is spelled."""
import os

import pytest

from tests.conftest import FAST


def _jobs(tmp_path, *jobs: tuple[str, str, str]) -> str:
    spec = tmp_path / "jobs.yaml"
    spec.write_text("jobs:\n" + "".join(f"  - {{input: '{i}', style: '{s}', output: '{o}'}}\n" for i, s, o in jobs))
    return str(spec)


@pytest.mark.parametrize("spelling", ["same", "dot", "dotdot", "absolute", "symlink", "hardlink", "style"])
def test_a_job_whose_output_is_its_input_or_style_is_refused(cli, tmp_path, weights_file, content_image,
                                                             style_image, spelling):
    folder = tmp_path / "media"
    folder.mkdir()
    image, style = folder / "a.png", folder / "s.png"
    image.write_bytes(content_image.read_bytes())
    style.write_bytes(style_image.read_bytes())
    os.symlink("a.png", folder / "link.png")
    os.link(image, folder / "hard.png")
    output = {"same": "media/a.png", "dot": "./media/a.png", "dotdot": "media/../media/a.png",
              "absolute": str(image), "symlink": "media/link.png", "hardlink": "media/hard.png",
              "style": "media/s.png"}[spelling]
    spec = _jobs(tmp_path, ("media/a.png", "media/s.png", output))
    before = image.read_bytes(), style.read_bytes()
    for _ in range(2):  # and again: a job is never "skipped (output exists)" when its output is its input
        result = cli("batch", spec, "--weights", weights_file, *FAST)
        assert result.exit_code == 2, result.stdout
        assert "nothing started" in result.stderr
        assert ("is the STYLE" if spelling == "style" else "is the INPUT") in result.stderr
        assert "skipped" not in result.stdout
    assert (image.read_bytes(), style.read_bytes()) == before


def test_a_job_writing_over_another_jobs_input_is_refused(cli, tmp_path, weights_file, content_image, style_image):
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    first.write_bytes(content_image.read_bytes())
    second.write_bytes(content_image.read_bytes())
    spec = _jobs(tmp_path, (first, style_image, tmp_path / "out1.png"), (second, style_image, first))
    result = cli("batch", spec, "--weights", weights_file, *FAST)
    assert result.exit_code == 2 and "job 2 (second.png): OUTPUT" in result.stderr
    assert "is the INPUT of job 1" in result.stderr
    assert not (tmp_path / "out1.png").exists() and first.read_bytes() == content_image.read_bytes()


def test_a_glob_batch_into_its_own_folder_is_refused(cli, tmp_path, weights_file, content_image, style_image):
    shots = tmp_path / "shots"
    shots.mkdir()
    (shots / "a.png").write_bytes(content_image.read_bytes())
    result = cli("batch", f"{shots}/*.png", "--style", style_image, "--out-dir", shots, "--weights", weights_file,
                 *FAST)
    assert result.exit_code == 2 and "is the INPUT" in result.stderr
    assert (shots / "a.png").read_bytes() == content_image.read_bytes()


def test_batch_overwrite_replaces_foreign_numbered_frames(cli, tmp_path, weights_file, content_image, style_image):
    out = tmp_path / "out"
    out.mkdir()
    (out / "000000.png").write_bytes(b"not ours")
    spec = _jobs(tmp_path, (content_image, style_image, out))
    result = cli("batch", spec, "--weights", weights_file, *FAST)
    assert result.exit_code == 1 and "did not write (000000.png)" in result.stdout
    assert (out / "000000.png").read_bytes() == b"not ours"
    result = cli("batch", spec, "--weights", weights_file, *FAST, "--overwrite")
    assert result.exit_code == 0 and (out / "000000.png").read_bytes() != b"not ours"
