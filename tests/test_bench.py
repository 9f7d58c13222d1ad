"""Benchmarks run end to end at tiny sizes (their figures are measured at real sizes; see README)."""
import json
import math

from PIL import Image


def test_bench_runs_end_to_end_at_tiny_sizes(cli, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text("iterations: 6\nframe_iterations: 2\nscales: [32]\nscale_iterations: [3]\nmin_scale: 0\n")
    result = cli("bench", "--sizes", "48", "--frames", "3", "--clip-size", "48", "--reference-evaluations", "3",
                 "--config", config, "--device", "cpu", "--json", tmp_path / "bench.json")
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    overhead, image, clip = report["overhead"][0], report["image"][0], report["clip"]
    assert overhead["size"] == [48, 26] and overhead["ratio"] > 0  # a timing: measured, never bounded by a test
    assert overhead["ratio"] == overhead["objective_seconds"] / overhead["bare_seconds"]
    assert overhead["precision"] == "fp32"                     # the default, auto, is strict fp32 on the CPU
    flow = report["flow"][0]                                   # the flow against a later frame's optimisation
    assert flow["size"] == [48, 26] and flow["flow_seconds"] > 0 and flow["workers"] == 1
    assert flow["later_seconds"] == 2 * overhead["step_seconds"]   # frame_iterations x L-BFGS's s/iteration
    assert overhead["step_ratio"] == overhead["step_seconds"] / overhead["bare_seconds"]
    assert flow["ratio"] == flow["flow_seconds"] / flow["later_seconds"] and 0 <= flow["idle_fraction"] < 1
    assert "flow/optimisation" in result.output and "flow thread" in result.output
    assert image["schedule"] == [[17, 32], [26, 48]]         # (H, W): the coarse scale, then full size
    assert math.isfinite(image["multiscale_final"]) and math.isfinite(image["single_final"])
    assert clip["frames"] == 3 and clip["ours_iterations_first"] == 6
    # the cap, extended twofold for frames below the cold level, and frame 0's probe of that level (at most
    # --iterations) shared out over the later frames
    assert 1 <= clip["ours_iterations_later"] <= 2 * 2 + 6 / 2
    assert clip["speedup"] == clip["reference_seconds"] / clip["ours_seconds"]
    assert clip["flow_seconds"] > 0 and 0 <= clip["idle_fraction"] <= 1
    assert "s a frame; optimiser idle" in result.output


def test_temporal_bench_judges_each_clip_by_its_true_flow_and_by_two_judges(cli, tmp_path):
    args = ["bench", "temporal", "--clips", "flicker,occluder", "--variants", "default,cold", "--frames", "4",
            "--width", "48", "--iterations", "4", "--frame-iterations", "2", "--cold-dir", tmp_path / "cold"]
    result = cli(*args, "--sheet", tmp_path / "sheets" / "s.png", "--json", tmp_path / "t.json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("frames cold") == 2          # each clip's sampled frames, optimised cold once
    rows = json.loads((tmp_path / "t.json").read_text())
    assert [(r["clip"], r["variant"], r["tuned"]) for r in rows] == [
        ("flicker", "default", True), ("flicker", "cold", True), ("occluder", "default", False), ("occluder", "cold", False)]
    for row in rows:
        errors = row["per_frame_error"]
        assert len(errors) == 3 and row["temporal_error"] == sum(errors) / 3
        assert row["error_worst"] == max(errors) == errors[row["worst_pair"] - 1]
        assert row["floor"] < 1e-3          # whole-pixel motion: the input warped by its true flow is itself
        assert set(row["judges"]) == {"objective", "other side"}
    for cold in rows[1], rows[3]:         # the cold variant is the references themselves: every ratio exactly 1
        assert cold["evaluations"] == 4 and cold["temporal_error"] > 0
        for judge in cold["judges"].values():
            assert judge["content"] == judge["style"] == judge["quality"] == judge["worst"] == 1.0
    # the cap, extended twofold below the cold level, and frame 0's probe of that level shared out over 3 frames
    assert rows[0]["evaluations"] <= 2 * 2 + 4 / 3 and rows[0]["judges"]["objective"]["quality"] != 1.0
    assert Image.open(tmp_path / "sheets" / "s.png").size[1] == 2 * (2 * 28 + 18) + 2 * (2 * 32 + 18)   # rows of 2x frames, labels, gaps
    assert "occluder*" in result.stdout and "flicker " in result.stdout      # * marks the held-out clips
    # the kept cold frames serve a rerun whose later frames differ (they do not change a cold frame)
    again = cli(*[a if a != "2" else "3" for a in args], "--temporal-weights", "5", "--json", tmp_path / "again.json")
    assert again.exit_code == 0 and "frames cold" not in again.stderr
    rerun = json.loads((tmp_path / "again.json").read_text())
    assert [r["variant"] for r in rerun[:3]] == ["default", "cold", "gamma 5"]
    assert rerun[1]["temporal_error"] == rows[1]["temporal_error"] and rerun[1]["judges"] == rows[1]["judges"]
    result = cli("bench", "temporal", "--clips", "nope")
    assert result.exit_code == 2 and "unknown clip 'nope'" in result.stderr


def test_chunks_bench_rates_the_seams_of_each_chunking(cli, tmp_path):
    result = cli("bench", "chunks", "--frames", "12", "--width", "64", "--max-shot-frames", "5", "--overlaps", "0,2",
                 "--iterations", "6", "--frame-iterations", "3", "--json", tmp_path / "c.json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads((tmp_path / "c.json").read_text())
    assert [r["name"] for r in rows] == ["one shot", "chunks of 5, overlap 0", "chunks of 5, overlap 2"]
    assert [r["units"] for r in rows] == [1, 3, 3] and [r["longest_unit"] for r in rows] == [12, 4, 6]
    for row in rows:
        assert row["worst_seam"] >= row["seam_error"] > 0 and row["inside_error"] > 0 and row["style"] > 0
    assert rows[1]["worst_seam"] > rows[0]["worst_seam"]  # a chunk starting cold, without overlap, is a jump
    assert "chunks of 5, overlap 2" in result.stdout
    result = cli("bench", "chunks", "--max-shot-frames", "5", "--overlaps", "0,5")
    assert result.exit_code == 2 and "each overlap must be from 0 to 4" in result.stderr
