"""Each loss against its formula, the Objective's scaling and targets."""
import math

import pytest
import torch

from pipeline.config import Config
from pipeline.losses import (Objective, TemporalTarget, content_loss, gram, style_layer_loss, temporal_loss,
                             tv_loss)
from pipeline.synthetic import random_vgg19_weights
from pipeline.vgg import VGG19Features


def test_gram_is_feature_correlations_over_positions():
    features = torch.randn(1, 4, 3, 5, generator=torch.Generator().manual_seed(0))
    flat = features[0].reshape(4, 15)
    expected = torch.stack([torch.stack([(flat[i] * flat[j]).sum() for j in range(4)]) for i in range(4)]) / 15
    assert torch.allclose(gram(features)[0], expected, atol=1e-6)
    assert torch.allclose(gram(features)[0], gram(features)[0].T)


def test_gram_gradient_matches_autograd():
    features = torch.randn(1, 5, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gram, (features,))
    weight = torch.randn(5, 5, dtype=torch.float64)
    (gram(features) * weight).sum().backward()
    ours = features.grad.clone()
    features.grad = None
    flat = features.reshape(1, 5, 12)
    ((flat @ flat.transpose(1, 2) / 12) * weight).sum().backward()
    assert torch.allclose(ours, features.grad)


def test_content_loss_is_half_squared_error_sum():
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    p = torch.tensor([[[[0.0, 2.0], [5.0, 4.0]]]])
    assert content_loss(f, p).item() == pytest.approx(0.5 * (1 + 4))


def test_style_loss_matches_gatys_eq4_for_equal_sizes():
    g = torch.Generator().manual_seed(1)
    x, s = torch.randn(1, 6, 4, 5, generator=g), torch.randn(1, 6, 4, 5, generator=g)
    n, m = 6, 20
    gx = x[0].reshape(n, m) @ x[0].reshape(n, m).T                   # unnormalised G
    gs = s[0].reshape(n, m) @ s[0].reshape(n, m).T                   # unnormalised A
    paper = ((gx - gs) ** 2).sum() / (4 * n**2 * m**2)                # eq. 4
    assert style_layer_loss(gram(x), gram(s)).item() == pytest.approx(paper.item(), rel=1e-5)


def test_style_loss_target_from_a_bigger_style_image_is_size_free():
    g = torch.Generator().manual_seed(2)
    tile = torch.randn(1, 3, 4, 4, generator=g)
    bigger = tile.repeat(1, 1, 2, 2)  # the same statistics over four times the positions
    assert style_layer_loss(gram(tile), gram(bigger)).item() == pytest.approx(0.0, abs=1e-10)


def test_tv_loss_sums_squared_neighbour_differences():
    image = torch.tensor([[[[0.0, 1.0], [0.0, 3.0]]]])
    assert tv_loss(image).item() == pytest.approx((1 + 9) + (0 + 4))


def test_temporal_loss_is_weighted_mean_over_d():
    x = torch.ones(1, 3, 2, 2)
    warped = torch.zeros(1, 3, 2, 2)
    weights = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])
    # sum c (x - w)^2 = 3 channels * (1 + 0.5); D = 3 * 2 * 2 = 12
    assert temporal_loss(x, warped, weights).item() == pytest.approx(4.5 / 12)


@pytest.fixture(scope="module")
def model():
    return VGG19Features(random_vgg19_weights(0), ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"])


def _objective(model, scale, **weights):
    cfg = Config()
    return Objective(model, cfg.content_layers, cfg.style_layers, loss_scale=scale,
                     content_weight=weights.get("content", 1.0), style_weight=weights.get("style", 1.0),
                     tv_weight=weights.get("tv", 0.0), temporal_weight=weights.get("temporal", 0.0),
                     temporal_detail=weights.get("detail", Config.temporal_detail))


def test_mean_scaling_is_the_paper_sum_divided_by_element_counts(model):
    g = torch.Generator().manual_seed(3)
    content, style, image = (torch.rand(1, 3, 48, 64, generator=g) for _ in range(3))
    parts = {}
    for scale in ("paper", "mean"):
        objective = _objective(model, scale, tv=1.0)
        objective.set_style([style])
        objective.set_content(content)
        _, parts[scale] = objective(image)
    feats = model(image, ["relu4_2", "relu1_1"])
    n, m = feats["relu4_2"].shape[1], feats["relu4_2"][0, 0].numel()
    assert parts["mean"]["content"].item() == pytest.approx(parts["paper"]["content"].item() * 2 / (n * m), rel=1e-4)
    assert parts["mean"]["tv"].item() == pytest.approx(parts["paper"]["tv"].item() / image[0].numel(), rel=1e-5)


def test_objective_content_zero_at_content_and_style_zero_at_style(model):
    g = torch.Generator().manual_seed(4)
    content, style = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    objective = _objective(model, "mean")
    objective.set_style([style])
    objective.set_content(content)
    _, at_content = objective(content)
    _, at_style = objective(style)
    assert at_content["content"].item() == pytest.approx(0.0, abs=1e-9)
    assert at_content["style"].item() > 0
    assert at_style["style"].item() == pytest.approx(0.0, abs=1e-6 * at_content["style"].item())


def test_style_blend_mixes_gram_targets(model):
    g = torch.Generator().manual_seed(5)
    a, b = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    objective = _objective(model, "mean")
    objective.set_style([a, b], [3.0, 1.0])
    objective.prepare((64, 64))
    ga, gb = gram(model(a, ["relu1_1"])["relu1_1"]), gram(model(b, ["relu1_1"])["relu1_1"])
    assert torch.allclose(objective.style_targets["relu1_1"], 0.75 * ga + 0.25 * gb, rtol=1e-4, atol=1e-6)


def test_temporal_term_and_gradient(model):
    g = torch.Generator().manual_seed(6)
    content = torch.rand(1, 3, 32, 32, generator=g)
    objective = _objective(model, "mean", temporal=10.0, detail=1.0)   # Ruder's pixel-wise term
    objective.set_style([content])
    objective.set_content(content)
    warped = torch.rand(1, 3, 32, 32, generator=g)
    objective.set_temporal([TemporalTarget(warped, torch.ones(1, 1, 32, 32))])
    image = content.clone().requires_grad_(True)
    total, parts = objective(image)
    assert parts["temporal"].item() == pytest.approx(10.0 * ((content - warped) ** 2).mean().item(), rel=1e-5)
    total.backward()
    assert image.grad is not None and math.isfinite(image.grad.abs().sum().item())
