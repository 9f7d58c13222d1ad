"""Benchmarks run end to end at tiny sizes (their figures are measured at real sizes; see README)."""
import json
import math


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
    assert image["schedule"] == [[17, 32], [26, 48]]         # (H, W): the coarse scale, then full size
    assert math.isfinite(image["multiscale_final"]) and math.isfinite(image["single_final"])
    assert clip["frames"] == 3 and clip["ours_iterations_first"] == 6
    assert clip["ours_iterations_later"] <= 4  # the cap, extended twofold for frames below the cold level
    assert clip["speedup"] == clip["reference_seconds"] / clip["ours_seconds"]
    result = cli("bench", "flicker", "--frames", "3", "--width", "40", "--iterations", "3", "--temporal-weights", "0.5",
                 "--pooling", "max", "--json", tmp_path / "f.json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads((tmp_path / "f.json").read_text())
    assert [r["name"] for r in rows] == ["cold", "plain", "flow", "ruder", "held", "temporal", "long-term", "previous",
                                           "restart", "halving", "temporal@0.5"]
    assert rows[0]["later_iterations"] == 3                 # cold frames: all the first frame's iterations
    assert rows[3]["later_iterations"] == 1                 # warm: a third ...
    assert 1 <= rows[5]["later_iterations"] <= 2            # ... twice that for a frame below the cold level
    assert rows[5]["level_iterations"] == 3 / 2   # frame 0's probe of the cold level (at most --iterations), per later frame
    assert rows[0]["level_iterations"] == rows[3]["level_iterations"] == 0   # nothing judged, nothing probed
    assert all(len(r["per_frame"]) == 3 for r in rows)      # each frame's content and style, for quality over time
    assert {r["pooling"] for r in rows} == {"max"}          # --pooling: every variant's objective, cold included
    header = result.stdout.splitlines()[0]
    assert "c+s vs cold" in header and "last q" in header
    cold_line = next(line for line in result.stdout.splitlines() if line.startswith("each frame cold"))
    assert cold_line.split().count("1.000") == 5            # the cold row against itself: every ratio 1.000


def test_drift_bench_judges_later_frames_against_cold_ones(cli, tmp_path):
    result = cli("bench", "drift", "--frames", "12", "--width", "48", "--iterations", "6", "--frame-iterations", "3",
                 "--every", "4", "--variants", "ruder,default", "--pooling", "avg", "--json", tmp_path / "d.json", "--plot",
                 tmp_path / "plots" / "d.png")
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "d.json").read_text())
    assert sorted(map(int, report["cold"])) == [0, 4, 8]
    rows = {r["name"]: r for r in report["rows"]}
    assert list(rows) == ["ruder", "default"] and (tmp_path / "plots" / "d.png").exists()
    assert {r["pooling"] for r in rows.values()} == {"avg"}  # --pooling over the tutorial objective's max
    assert rows["ruder"]["later_iterations"] <= 3      # Ruder's plain cap; the default may extend it to 2x
    assert rows["default"]["later_iterations"] <= 6
    for row in rows.values():
        assert len(row["per_frame"]) == 12 and row["later_frames"] == 11
        ratios = [sum(row["per_frame"][i]) / sum(report["cold"][str(i)][:2]) for i in (4, 8)]
        assert row["quality_ratio"] == sum(ratios) / 2 and row["worst_ratio"] == max(ratios)
        assert row["speedup"] == 6 / (row["later_iterations"] + row["level_iterations"])   # probes count too
    assert rows["ruder"]["level_iterations"] == 0 and rows["default"]["level_iterations"] == 6 * 2 / 11
    assert "ruder: Ruder's loss" in result.stdout
    result = cli("bench", "drift", "--variants", "nope")
    assert result.exit_code == 2 and "unknown variant 'nope'" in result.stderr


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
