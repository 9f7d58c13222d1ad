"""The seed's figures: reconstructions per layer, the progress of an optimisation, the alpha/beta sweep."""

import numpy as np
import pytest

from pipeline import figures, media, probe, reconstruct
from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.synthetic import texture
from tests.conftest import FAST


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def test_conv1_1_reconstruction_recovers_the_image(weights_file):
    image = texture(48, 64, seed=4)
    maker = reconstruct.Reconstructor(image, Config(size=64, weights=str(weights_file), device="cpu"),
                                      layers=["conv1_1"])
    panel = maker.content("conv1_1", iterations=60, seed=0)
    history = panel.result.history
    # noise scores 1, the result far less (measured 0.016: pixels the noise put near 0 or 1 move slowly
    # through the tanh bound of L-BFGS, the PSNR below is unchanged by it)
    assert history[-1]["total"] < 0.03 * history[0]["total"]
    noise_start = (np.random.default_rng(0).random(image.shape) * 255).astype(np.uint8)
    # measured: about 27 dB after 60 iterations (white noise scores about 8 dB)
    assert psnr(panel.image, maker.image) > 20 > psnr(noise_start, maker.image)
    assert np.corrcoef(panel.image.ravel(), maker.image.ravel())[0, 1] > 0.95


def test_style_subsets_are_exactly_the_ones_asked_for(weights_file, monkeypatch):
    assert reconstruct.parse_subsets(None) == [["conv1_1"], ["conv1_1", "conv2_1"], ["conv1_1", "conv2_1", "conv3_1"],
                                               ["conv1_1", "conv2_1", "conv3_1", "conv4_1"],
                                               ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]]
    assert reconstruct.parse_subsets("relu1_1,relu2_1") == [["relu1_1"], ["relu1_1", "relu2_1"]]
    assert reconstruct.parse_subsets("conv2_1;conv1_1,conv3_1") == [["conv2_1"], ["conv1_1", "conv3_1"]]
    seen = []
    real = reconstruct.Objective.from_config

    def spy(model, cfg):
        seen.append(sorted(cfg.style_layers))
        return real(model, cfg)

    monkeypatch.setattr(reconstruct.Objective, "from_config", spy)
    maker = reconstruct.Reconstructor(texture(32, 32, 1), Config(size=32, weights=str(weights_file), device="cpu"),
                                      layers=["conv1_1", "conv3_1"])
    for subset in reconstruct.parse_subsets("conv2_1;conv1_1,conv3_1"):
        maker.style(subset, iterations=2)
    assert seen == [["conv2_1"], ["conv1_1", "conv3_1"]]


@pytest.mark.parametrize("text, message", [
    ("conv1_1,conv9_9", "unknown layer 'conv9_9'"),
    ("conv6_1", "unknown layer 'conv6_1'"),
    ("conv1_1,", "empty layer name"),
])
def test_bad_layer_lists(text, message):
    with pytest.raises(ConfigError, match=message):
        reconstruct.parse_layers(text, ())
    with pytest.raises(ConfigError, match="empty layer subset"):
        reconstruct.parse_subsets("conv1_1;;conv2_1")


def test_grid_has_the_panels_and_size(tmp_path):
    panels = [np.full((30, 40, 3), v, np.uint8) for v in (0, 60, 120, 180, 240, 90, 30)]
    rows, columns = figures.image_grid(panels, [f"p{i}" for i in range(7)], tmp_path / "grid.png", columns=3)
    assert (rows, columns) == (3, 3)
    image = media.read_image(tmp_path / "grid.png")
    assert image.shape[1] > image.shape[0] * 0.9 and image.shape[1] >= 3 * 2.6 * 100


def test_loss_plot_covers_every_iteration(tmp_path):
    histories = [[{"content": 1.0 / (i + 1), "style": 2.0, "total": 3.0} for i in range(40)],
                 [{"content": 0.5, "style": 1.0, "temporal": 0.1, "total": 1.6} for _ in range(15)]]
    assert figures.loss_plot(histories, tmp_path / "loss.png") == 55
    assert media.read_image(tmp_path / "loss.png").shape[0] > 300


def test_reconstruct_commands_write_grids_and_panels(cli, tmp_path, weights_file, content_image):
    out = tmp_path / "content.png"
    result = cli("reconstruct", "content", content_image, out, "--layers", "conv1_1,conv2_1", "--iterations", "3",
                 "--size", "48", "--weights", weights_file, "--device", "cpu", "--panels", tmp_path / "panels", "-q")
    assert result.exit_code == 0, result.stderr
    assert out.exists() and len(list((tmp_path / "panels").glob("content_*.png"))) == 3  # original + 2 layers
    out = tmp_path / "style.png"
    result = cli("reconstruct", "style", content_image, out, "--layers", "conv1_1,conv2_1,conv3_1", "--iterations", "2",
                 "--size", "48", "--weights", weights_file, "--device", "cpu", "--panels", tmp_path / "sp", "-q")
    assert result.exit_code == 0, result.stderr
    assert len(list((tmp_path / "sp").glob("style_*.png"))) == 4


def test_sweep_command_writes_one_panel_per_ratio_and_layer(cli, tmp_path, weights_file, content_image, style_image):
    out = tmp_path / "sweep.png"
    result = cli("sweep", content_image, style_image, out, "--ratios", "1e-2,1e-4", "--content-layers",
                 "relu2_2,relu4_2", "--iterations", "2", "--size", "48", "--weights", weights_file, "--device", "cpu",
                 "--panels", tmp_path / "p", "-q")
    assert result.exit_code == 0, result.stderr
    assert out.exists() and len(list((tmp_path / "p").glob("sweep_*.png"))) == 4


@pytest.mark.parametrize("args, message", [
    (["reconstruct", "content", "{img}", "{out}", "--layers", "conv1_1,conv7_1"], "unknown layer 'conv7_1'"),
    (["reconstruct", "style", "{img}", "{out}", "--layers", "conv1_1;;conv2_1"], "empty layer subset"),
    (["reconstruct", "content", "{bad}", "{out}"], "is not a readable image"),
    (["reconstruct", "content", "{img}", "{tmp}/x.jpg"], "must end in .png"),
    (["sweep", "{img}", "{img}", "{out}", "--ratios", "1e-3,-1"], "none negative"),
    (["sweep", "{img}", "{img}", "{out}", "--ratios", "0"], "ratios must be positive"),
    (["sweep", "{img}", "{img}", "{out}", "--ratios", "big"], "not a comma-separated list of numbers"),
])
def test_figure_commands_bad_input(cli, tmp_path, weights_file, content_image, args, message):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    values = {"img": content_image, "out": tmp_path / "o.png", "bad": bad, "tmp": tmp_path}
    result = cli(*[a.format(**values) for a in args], "--weights", weights_file, "--device", "cpu", "--iterations", "1",
                 "--size", "32")
    assert result.exit_code != 0 and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_progress_outputs_of_the_main_command(cli, tmp_path, weights_file, style_image, content_image, clip):
    out = tmp_path / "out.png"
    result = cli(content_image, style_image, out, "--weights", weights_file, *FAST, "--iterations", "12",
                 "--save-every", "4", "--progress-dir", tmp_path / "steps", "--progress-sheet", tmp_path / "sheet.png",
                 "--progress-anim", tmp_path / "anim.gif", "--loss-plot", tmp_path / "loss.png")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "steps").iterdir()) == [
        "iter_000004.png", "iter_000008.png", "iter_000012.png"]
    from PIL import Image

    with Image.open(tmp_path / "anim.gif") as gif:
        assert gif.n_frames == 3
    assert (tmp_path / "sheet.png").exists() and (tmp_path / "loss.png").exists()
    # a video: snapshots of the first frame, an MP4 animation, and a loss plot over all frames
    result = cli(clip, style_image, tmp_path / "out.mp4", "--weights", weights_file, *FAST, "--save-every", "3",
                 "--progress-anim", tmp_path / "anim.mp4", "--loss-plot", tmp_path / "vloss.png")
    assert result.exit_code == 0, result.stderr
    assert probe.probe_video(tmp_path / "anim.mp4").frames == 2
    assert (tmp_path / "out.mp4.progress" / "iter_000006.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--save-every", "0"], "must be at least 1"),
    (["--save-every", "-3"], "must be at least 1"),
    (["--progress-sheet", "s.png"], "needs --save-every"),
    (["--save-every", "2", "--progress-anim", "a.avi"], "must end in .gif or .mp4"),
    (["--loss-plot", "l.jpg"], "must end in .png"),
])
def test_progress_options_bad_input(cli, tmp_path, weights_file, style_image, content_image, args, message):
    result = cli(content_image, style_image, tmp_path / "o.png", "--weights", weights_file, *FAST, *args)
    assert result.exit_code == 2 and message in result.stderr and not (tmp_path / "o.png").exists()


def test_runs_eval_and_figures_score_with_the_same_network(weights_file, style_image, tmp_path):
    """One factory builds the network from a Config: a run, `eval --style` and the figures all use its pooling
    (eval once scored style with max pooling while runs used average pooling)."""
    import torch

    from pipeline import evaluate, stylist

    def pools(model):
        return {type(m).__name__ for m in model.modules() if "Pool" in type(m).__name__}

    for pooling, kind in (("avg", "AvgPool2d"), ("max", "MaxPool2d"), ("blur", "BlurPool")):
        cfg = Config(weights=str(weights_file), device="cpu", size=32, pooling=pooling)
        expected = {kind}
        frame = texture(32, 32, 1)
        assert pools(stylist.Stylist(cfg, torch.device("cpu"), [frame], frame).model) == expected
        assert pools(evaluate.Scorer(cfg, style_image, (32, 32)).objective.model) == expected
        assert pools(reconstruct.Reconstructor(frame, cfg, layers=["conv3_1"]).model) == expected
