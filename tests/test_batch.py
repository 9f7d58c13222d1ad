"""Batches never destroy a user's files: an output that is a job's own input or style, or another job's, is
refused before anything starts, however it is spelled."""
import json
import os
import sys

import pytest

from pipeline import media
from pipeline.synthetic import moving_clip, write_frames
from tests.conftest import FAST, ROOT, batch_command, run


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
    # Made otherwise: a finished output of other settings is not "done"; --overwrite makes it again.
    frame = next((tmp_path / "out" / "a").glob("*.png"))
    before = frame.read_bytes()
    changed = run(batch_command(jobs, weights_file, "--size", "56"))
    assert changed.returncode == 1
    assert "exists, but it was made with other settings (changed: size 64 -> 56)" in changed.stdout.splitlines()[1]
    assert "skipped" in changed.stdout.splitlines()[3] and frame.read_bytes() == before  # job 3 sets its own size
    redone = run(batch_command(jobs, weights_file, "--size", "56", "--overwrite"))
    assert "done" in redone.stdout.splitlines()[1], redone.stdout
    assert media.read_image(next((tmp_path / "out" / "a").glob("*.png"))).shape[1] == 56
    (tmp_path / "out" / "c.mkv").write_bytes(b"someone else's file")
    foreign = run(batch_command(jobs, weights_file, "--size", "56"))
    assert "nst-video has no record of making it" in foreign.stdout.splitlines()[3]
    assert (tmp_path / "out" / "c.mkv").read_bytes() == b"someone else's file"


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


BOMB_CHECK = """
import resource, sys, time
sys.path.insert(0, sys.argv[1])
import torch, pipeline.video  # what a batch loads anyway, before the limit: the limit is on what the jobs file adds
from pipeline import jobfile
from pipeline.errors import NSTError
size = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (size + (512 << 20), resource.RLIM_INFINITY))
for spec in sys.argv[2:]:
    started = time.perf_counter()
    try:
        jobfile.load_jobs(spec)
    except NSTError as error:
        print(" | ".join(str(error).splitlines())[:3000])
    print(round(time.perf_counter() - started, 3))
"""


def test_a_yaml_alias_bomb_in_a_job_is_refused_quickly_in_bounded_memory(tmp_path):
    """Nine aliases of nine, ten levels deep: 9^10 values if anything walks or formats it. Under a memory limit
    (the expansion needs far more) each refusal comes at once, in a message that does not quote the value."""
    levels = ["  a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 11)]
    expected = {"size": "job 1: size: expected int, got a list of 9 items",
                "input": "input must be a path, not a list of 9 items",
                "style": "style must be a path or a list of paths, not a list of 9 items"}
    specs = []
    for key in expected:
        job = {"input": "in.mp4", "style": "s.png", "output": "o.mp4", "size": "64", key: "*a10"}
        spec = tmp_path / f"{key}.yaml"
        spec.write_text("anchors:\n" + "\n".join(levels) + "\njobs:\n  - " +
                        "\n    ".join(f"{k}: {v}" for k, v in job.items()) + "\n")
        specs.append(str(spec))
    result = run([sys.executable, "-c", BOMB_CHECK, str(ROOT), *specs])
    assert result.returncode == 0 and "MemoryError" not in result.stderr, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    for (key, text), message, seconds in zip(expected.items(), lines[0::2], lines[1::2]):
        assert float(seconds) < 2.0, (key, seconds)
        assert text in message and all(len(line) < 300 for line in message.split(" | ")), message
    assert len(lines) == 6


def test_a_jobs_file_over_the_limit_is_refused_before_it_is_read(tmp_path):
    from pipeline import jobfile
    from pipeline.errors import ConfigError

    spec = tmp_path / "jobs.yaml"
    with open(spec, "w") as handle:
        handle.write("jobs:\n")
        handle.truncate(jobfile.MAX_JOBS_FILE + 1)
    with pytest.raises(ConfigError, match="at most 4 MiB is read"):
        jobfile.load_jobs(str(spec))


def test_a_batch_goes_on_after_a_failed_job_and_its_table_says_which(tmp_path, weights_file, style_image, frames_dir):
    """run_batch in this process: a job that fails (its own `device:` does not exist) is reported failed with its
    one line and the next job still runs; the summary table names both. Given the device of a worker, that device
    wins over the job's own key (the unit runs where the worker is)."""
    from pipeline import batch, jobfile
    from pipeline.config import load_config
    from pipeline.errors import StopFlag

    spec = tmp_path / "jobs.yaml"
    spec.write_text(f"jobs:\n  - {{input: '{frames_dir}', style: '{style_image}', output: '{tmp_path / 'a'}', "
                    f"device: 'cuda:99'}}\n  - {{input: '{frames_dir}', style: '{style_image}', output: '{tmp_path / 'b'}'}}\n")
    base = load_config("default", weights=str(weights_file), size=48, iterations=4, frame_iterations=2, device="cpu")
    jobs = jobfile.load_jobs(str(spec), base_config=base)
    events = []
    outcomes = batch.run_batch(jobs, [], base, {}, events.append, StopFlag())
    assert [o.status for o in outcomes] == ["failed", "done"] and "cuda:99" in outcomes[0].message
    assert outcomes[1].frames == 14 and len(list((tmp_path / "b").glob("*.png"))) == 14
    table = batch.summary_table(outcomes).splitlines()
    assert len(table) == 3 and "failed: " in table[1] and table[2].rstrip().endswith("done")
    assert [o.status for o in batch.run_batch(jobs[:1], ["cpu"], base, {}, events.append, StopFlag())] == ["done"]
