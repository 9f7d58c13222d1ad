"""Layer names, trimming, in-place ReLUs, and weight loading (never random weights in the product)."""
import pytest
import torch
import torchvision

from pipeline.config import VGG19_LAYERS
from pipeline.synthetic import random_vgg19_weights
from pipeline.config import downsampling
from pipeline.vgg import BlurPool, VGG19Features, cached_weights_path, channels, load_weights
from pipeline.errors import WeightsError


def test_layer_names_follow_torchvision_features():
    model = torchvision.models.vgg19(weights=None).features
    assert len(VGG19_LAYERS) == len(model) == 37
    for name, module in zip(VGG19_LAYERS, model):
        kind = {"conv": torch.nn.Conv2d, "relu": torch.nn.ReLU, "pool": torch.nn.MaxPool2d}[name[:4]]
        assert isinstance(module, kind), name
    assert (VGG19_LAYERS[0], VGG19_LAYERS[21], VGG19_LAYERS[22], VGG19_LAYERS[29]) == (
        "conv1_1", "conv4_2", "relu4_2", "relu5_1")
    assert channels("relu1_1") == 64 and channels("conv4_2") == 512 and downsampling("relu4_2") == 8


def test_model_is_cut_after_the_deepest_layer_and_frozen():
    model = VGG19Features(random_vgg19_weights(0), ["relu1_1", "conv3_1"])
    assert model.names[-1] == "conv3_1" and len(model.body) == VGG19_LAYERS.index("conv3_1") + 1
    assert not any(p.requires_grad for p in model.parameters())
    out = model(torch.rand(1, 3, 32, 32))
    assert set(out) == {"relu1_1", "conv3_1"}
    assert out["conv3_1"].shape == (1, 256, 8, 8)


def test_requested_conv_output_is_not_overwritten_by_an_in_place_relu():
    model = VGG19Features(random_vgg19_weights(0), ["conv1_1", "relu1_1"])
    out = model(torch.rand(1, 3, 16, 16))
    assert (out["conv1_1"] < 0).any()  # pre-activation values survive
    assert torch.equal(out["relu1_1"], out["conv1_1"].clamp_min(0))


def test_same_features_as_torchvision_with_imagenet_normalisation():
    reference = torchvision.models.vgg19(weights=None).features.eval()
    state = {k: v for k, v in reference.state_dict().items()}
    model = VGG19Features(state, ["relu2_1"])
    image = torch.rand(1, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference[:7]((image - mean) / std)
    assert torch.allclose(model(image)["relu2_1"], expected, atol=1e-5)


def test_avg_pooling_and_caffe_preprocessing():
    model = VGG19Features(random_vgg19_weights(0), ["pool1"], pooling="avg", weights_format="caffe")
    assert isinstance(model.body[-1], torch.nn.AvgPool2d)
    image = torch.zeros(1, 3, 4, 4)
    image[:, 0] = 1.0  # pure red in RGB
    pre = model.preprocess(image)
    assert pre[0, 2, 0, 0].item() == pytest.approx(255 - 123.68, abs=1e-3)  # red is the last BGR channel
    assert pre[0, 0, 0, 0].item() == pytest.approx(-103.939, abs=1e-3)


def test_blur_pooling_keeps_avg_poolings_sizes_and_is_less_shift_variant():
    """`pooling: blur` stands in for average pooling: the same output sizes (odd sizes included, so the
    size checks made for the poolings hold), a flat map kept flat at its level, and a fit that moves
    with the frame: a one-pixel shift of the input changes its deep features far less."""
    weights = random_vgg19_weights(0)
    avg, blur = (VGG19Features(weights, ["relu4_2"], pooling=p) for p in ("avg", "blur"))
    assert sum(isinstance(m, BlurPool) for m in blur.body) == 3
    for height, width in ((64, 96), (37, 51), (17, 17)):
        image = torch.rand(1, 3, height, width)
        assert blur(image)["relu4_2"].shape == avg(image)["relu4_2"].shape
    flat = torch.full((1, 8, 9, 12), 0.3)
    assert torch.allclose(BlurPool(8)(flat), torch.nn.AvgPool2d(2, 2)(flat))
    torch.manual_seed(0)
    image = torch.nn.functional.interpolate(torch.rand(1, 3, 24, 40), size=(96, 160), mode="bicubic").clamp(0, 1)

    def moved(model):
        still, shifted = model(image[..., 8:88, 8:152])["relu4_2"], model(image[..., 8:88, 9:153])["relu4_2"]
        return ((shifted - still).pow(2).mean() / still.pow(2).mean()).item()
    assert moved(blur) < moved(avg) / 3


def test_load_features_only_and_full_model_state_dicts(weights_file, full_weights_file):
    a, b = load_weights(weights_file), load_weights(full_weights_file)
    assert set(a) == set(b) and torch.equal(a["0.weight"], b["0.weight"])
    assert "classifier.0.weight" not in b


@pytest.mark.parametrize("content, message", [
    (b"not a checkpoint at all", "is not a VGG19 state dict"),
])
def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path, content, message):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=message):
        load_weights(path)


def test_a_state_dict_of_another_network_is_refused(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match="no weights for conv1_1"):
        load_weights(path)
    state = random_vgg19_weights(0)
    state["2.weight"] = torch.zeros(64, 32, 3, 3)
    torch.save(state, path)
    with pytest.raises(WeightsError, match="conv1_2 has shape"):
        load_weights(path)


def test_without_weights_offline_the_error_says_how_to_get_them(monkeypatch, tmp_path):
    import urllib.request

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr("torch.hub.urlopen", offline, raising=False)
    assert str(cached_weights_path()).startswith(str(tmp_path))
    with pytest.raises(WeightsError) as error:
        load_weights(None, progress=False)
    assert "nst-video weights download" in str(error.value) and "--weights" in str(error.value)
    assert not cached_weights_path().exists()


def test_weights_found_in_the_torchvision_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = cached_weights_path()
    cached.parent.mkdir(parents=True)
    torch.save({f"features.{k}": v for k, v in random_vgg19_weights(1).items()}, cached)
    assert torch.equal(load_weights(None)["0.weight"], random_vgg19_weights(1)["0.weight"])
