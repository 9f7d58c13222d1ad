"""Nothing of the user's is lost: outputs never replace what a run reads, output folders are replaced only
when their files are ours, leftovers of dead runs go, a live run's stay, and refused commands create nothing."""
import os
import subprocess
import sys

import pytest

from pipeline import files
from pipeline.errors import ConfigError


@pytest.fixture
def image(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    path = folder / "a.png"
    path.write_bytes(b"the user's picture")
    return path


@pytest.mark.parametrize("spelling", ["plain", "dot", "dotdot", "absolute", "symlink", "hardlink"])
def test_the_same_file_however_spelled(image, monkeypatch, spelling):
    monkeypatch.chdir(image.parent)
    other = {"plain": "a.png", "dot": "./a.png", "dotdot": f"../{image.parent.name}/a.png", "absolute": str(image)}
    if spelling == "symlink":
        os.symlink("a.png", image.parent / "link.png")
        other[spelling] = "link.png"
    if spelling == "hardlink":
        os.link(image, image.parent / "hard.png")
        other[spelling] = "hard.png"
    assert files.same_file(other[spelling], "a.png")
    with pytest.raises(ConfigError, match="is the INPUT"):
        files.check_not_overwriting(other[spelling], {"INPUT": ["a.png"]}, folder=False)


def test_a_copy_is_another_file(image):
    copy = image.with_name("copy.png")
    copy.write_bytes(image.read_bytes())
    assert not files.same_file(copy, image)
    files.check_not_overwriting(copy, {"INPUT": [image]}, folder=False)


def test_an_output_folder_may_not_hold_what_is_read(image):
    with pytest.raises(ConfigError, match="holds the STYLE"):
        files.check_not_overwriting(image.parent, {"STYLE": [image]}, folder=True)
    with pytest.raises(ConfigError, match="holds the INPUT"):
        files.check_not_overwriting(image.parent.parent, {"INPUT": [image]}, folder=True)
    files.check_not_overwriting(image.parent / "styled", {"INPUT": [image]}, folder=True)


def test_output_folder_ownership_is_known_by_the_marker(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i:06d}.png").write_bytes(b"x")
    (folder / files.FOLDER_MARKER).write_bytes(files.frames_marker(3))
    assert files.foreign_files(folder) == ([], [])
    files.check_output_folder(folder, overwrite=False)
    (folder / "000009.png").write_bytes(b"the user's")
    assert files.foreign_files(folder) == ([], ["000009.png"])
    with pytest.raises(ConfigError, match="did not write .000009.png.*--overwrite"):
        files.check_output_folder(folder, overwrite=False)
    files.check_output_folder(folder, overwrite=True)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="other files .notes.txt"):
        files.check_output_folder(folder, overwrite=True)


def test_dead_runs_partials_are_removed_and_live_ones_kept(tmp_path):
    output = tmp_path / "out.mp4"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead_file = tmp_path / f".out.partial-{dead.pid}.mp4"
        live_file = tmp_path / f".out.partial-{live.pid}.mp4"
        other_output = tmp_path / f".other.partial-{dead.pid}.mp4"
        for path in (dead_file, live_file, other_output):
            path.write_bytes(b"partial")
        assert files.remove_dead_partials(output) == [dead_file]
        assert not dead_file.exists() and live_file.exists() and other_output.exists()
    finally:
        live.kill()
        live.wait()
    folder_output = tmp_path / "frames"
    leftover = tmp_path / f".frames.partial-{dead.pid}.d"
    leftover.mkdir()
    (leftover / "000000.png").write_bytes(b"x")
    assert files.remove_dead_partials(folder_output) == [leftover] and not leftover.exists()


def test_checks_create_nothing(tmp_path):
    target = tmp_path / "a" / "b" / "log.jsonl"
    files.check_file_output(target, "--log")
    assert not (tmp_path / "a").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        files.check_file_output(blocker / "log.jsonl", "--log")
    with pytest.raises(ConfigError, match="is a folder"):
        files.check_file_output(tmp_path, "--log")


def test_atomic_write_creates_the_folder_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "new" / "figures.json"
    files.write_file(target, b"{}", durable=True)
    assert target.read_bytes() == b"{}" and [p.name for p in target.parent.iterdir()] == ["figures.json"]
