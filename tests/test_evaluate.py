"""`nst-video eval`: the temporal error of a clip against its original (zero for an unchanged clip, the floor for the
original itself), the quality of every frame under the run's own objective, drift against cold references, and
one-line refusals of clips that cannot be compared."""
import json

import numpy as np
import pytest

from pipeline.synthetic import moving_clip, write_frames
from tests.conftest import run_job, small


def test_eval_of_an_unchanged_clip_is_zero_and_of_itself_equals_the_floor(cli, tmp_path):
    still = [moving_clip(frames=1, width=96, height=64).frames[0]] * 5
    source = write_frames(still, tmp_path / "still")
    result = cli("eval", source, source, "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.stderr
    figures = json.loads((tmp_path / "e.json").read_text())
    assert figures["temporal_error"] < 0.01 and figures["frames"] == 5
    moving = write_frames(moving_clip(frames=5, width=96, height=64).frames, tmp_path / "moving")
    result = cli("eval", moving, moving, "--json", tmp_path / "m.json", "--csv", tmp_path / "m.csv",
                 "--plot", tmp_path / "m.png")
    figures = json.loads((tmp_path / "m.json").read_text())
    assert result.exit_code == 0 and figures["temporal_error"] == pytest.approx(figures["original_floor"])
    assert len((tmp_path / "m.csv").read_text().splitlines()) == 5 and (tmp_path / "m.png").exists()


def test_eval_of_a_stylised_clip_with_style_loss(cli, tmp_path, weights_file, style_image, synthetic_frames):
    run_job(synthetic_frames, style_image, tmp_path / "styled", small(weights_file))
    result = cli("eval", tmp_path / "styled", synthetic_frames, "--style", style_image, "--weights", weights_file,
                 "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert "temporal error (RMSE, 0-255):" in result.stdout and "style term" in result.stdout
    assert "compared at 64x42" in result.stderr               # sizes differ: ORIGINAL resampled, with a warning


def test_eval_scores_frames_with_the_runs_objective_and_reports_drift(cli, tmp_path, weights_file, style_image,
                                                                      synthetic_frames):
    """eval --style rates each frame with the objective the run optimised (the same pooling, layers and
    weights: avg pooling by default), so its figures match the run's own log; references give drift."""
    cfg = small(weights_file)
    summary, _ = run_job(synthetic_frames, style_image, tmp_path / "styled", cfg)
    config = tmp_path / "run.yaml"
    config.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in cfg.to_dict().items() if v is not None))
    result = cli("eval", tmp_path / "styled", synthetic_frames, "--style", style_image, "--config", config,
                 "--size", "64", "--reference-every", "2", "--json", tmp_path / "e.json", "--csv", tmp_path / "e.csv")
    assert result.exit_code == 0, result.stderr
    figures = json.loads((tmp_path / "e.json").read_text())
    rated = {q["index"]: q for q in figures["quality"]}
    assert sorted(rated) == list(range(5))
    for index in range(5):  # the saved (8-bit) frame scores as the run's final losses did
        final = summary.losses[index]
        assert rated[index]["style"] == pytest.approx(final["style"], rel=0.05)
        assert rated[index]["content"] == pytest.approx(final["content"], rel=0.05)
    assert [i for i in rated if rated[i]["ratio"] is not None] == [0, 2, 4]
    assert figures["drift"]["sampled_frames"] == [0, 2, 4] and figures["drift"]["worst_ratio"] > 0
    assert "against cold optimisation of the same frames" in result.stdout
    assert "reference_content" in (tmp_path / "e.csv").read_text().splitlines()[0]
    max_pooled = cfg.replace(pooling="max").to_dict()
    config.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in max_pooled.items() if v is not None))
    other = cli("eval", tmp_path / "styled", synthetic_frames, "--style", style_image, "--config", config,
                "--size", "64", "--json", tmp_path / "max.json")
    assert other.exit_code == 0, other.stderr
    style_max = json.loads((tmp_path / "max.json").read_text())["quality"][1]["style"]
    assert style_max != pytest.approx(rated[1]["style"], rel=0.05)  # the pooling is the config's, not a default


def test_eval_bad_input(cli, tmp_path, clip, content_image):
    short = write_frames(moving_clip(frames=3, width=96, height=64).frames, tmp_path / "short")
    longer = write_frames(moving_clip(frames=4, width=96, height=64).frames, tmp_path / "longer")
    result = cli("eval", short, longer)
    assert result.exit_code == 1 and "different frame counts" in result.stderr
    result = cli("eval", content_image, clip)
    assert result.exit_code == 1 and "has one frame" in result.stderr
    tall = write_frames([np.zeros((96, 64, 3), np.uint8)] * 3, tmp_path / "tall")
    result = cli("eval", short, tall)
    assert result.exit_code == 1 and "different shapes" in result.stderr
    result = cli("eval", short, short, "--json", tmp_path / "x.txt")
    assert result.exit_code == 2 and "must end in .json" in result.stderr
