"""Strict config loading, validation, presets, and default.yaml staying true to Config."""
import re
from fractions import Fraction

import pytest
import yaml

from pipeline.config import CONFIG_DIR, Config, config_from_dict, load_config, parse_fraction, reference_yaml
from pipeline.errors import ConfigError


def test_presets_load_and_flags_override_them():
    assert load_config("default") == Config()
    fast = load_config("fast")
    assert fast.size < Config().size
    assert load_config("fast", size=96).size == 96
    paper = load_config("gatys2016")
    assert paper.loss_scale == "paper" and paper.pooling == "avg" and paper.content_weight / paper.style_weight == 1e-3


def test_default_yaml_documents_every_key_with_its_true_default():
    assert (CONFIG_DIR / "default.yaml").read_text() == reference_yaml(), \
        "configs/default.yaml is stale: regenerate it (see pipeline.config.reference_yaml)"
    documented = {}
    for line in (CONFIG_DIR / "default.yaml").read_text().splitlines():
        match = re.match(r"# (\w+): (.*?)\s+# ", line)
        if match:
            documented[match.group(1)] = yaml.safe_load(match.group(2))
    assert documented == Config().to_dict()


@pytest.mark.parametrize("text, message", [
    ("sise: 512\n", "unknown key sise"),
    ("size: big\n", "size: expected int"),
    ("size: 12.5\n", "size: expected int"),
    ("flow: 'yes'\n", "flow: expected bool"),
    ("content_weight: -1\n", "content_weight must not be negative"),
    ("style_layers: {relu9_9: 1}\n", "unknown layer 'relu9_9'"),
    ("style_layers: {}\ncontent_layers: {}\n", "nothing to optimise"),
    ("- a\n- b\n", "must be a mapping"),
    ("size: [\n", "not valid YAML"),
    ("scales: [256]\n", "scale_iterations has 4"),
    ("scales: [0.5, 0.25]\nscale_iterations: [1, 1]\n", "scales must be positive, ascending"),
    ("optimizer: sgd\n", "optimizer must be one of lbfgs, adam"),
    ("temporal_relax: 0\n", r"temporal_relax must be in \(0, 1\], not 0"),
    ("temporal_relax: 1.5\n", r"temporal_relax must be in \(0, 1\], not 1.5"),
    ("relax_every: 0\n", "relax_every must be at least 1, not 0"),
    ("temporal_floor: 2\n", r"temporal_floor must be in \[0, 1\], not 2"),
    ("relax_share: 1\n", r"relax_share must be in \[0, 1\), not 1"),
    ("start_warp: lanczos\n", r"start_warp"),
    ("probe_every: -1\n", "probe_every must not be negative and probe_iterations must be at least 1, not -1 and 40"),
    ("probe_iterations: 0\n", "probe_every must not be negative and probe_iterations must be at least 1, not 10 and 0"),
    ("reprobe_after: -2\n", "reprobe_after must not be negative, not -2"),
    ("term_slack: 0.5\n", r"term_slack must be 0 \(off\) or at least 1, not 0.5"),
])
def test_bad_configs_are_refused_with_a_clear_message(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(str(path))


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="presets are default, fast, gatys2016"):
        load_config("nosuchpreset")


def test_layers_as_a_list_get_equal_weights(tmp_path):
    path = tmp_path / "layers.yaml"
    path.write_text("style_layers: [relu1_1, relu2_1]\n")
    assert dict(load_config(str(path)).style_layers) == {"relu1_1": 0.5, "relu2_1": 0.5}


def test_frame_rates_stay_exact():
    assert parse_fraction("30000/1001") == Fraction(30000, 1001)
    assert parse_fraction(29.97) == Fraction(30000, 1001)
    assert parse_fraction("23.976") == Fraction(24000, 1001)
    assert parse_fraction(25) == Fraction(25) and parse_fraction("12.5") == Fraction(25, 2)
    assert load_config(None, fps="30000/1001").fps == Fraction(30000, 1001)


def test_round_trip_through_a_dict_and_the_job_identity_ignores_output_settings():
    cfg = load_config("fast", style_blend="0.7,0.3", scales="64,96", scale_iterations="10,10", size=128)
    assert config_from_dict(cfg.to_dict()) == cfg
    assert cfg.style_blend == (0.7, 0.3)
    assert cfg.replace(crf=30, codec="h265", keep_size=True).frames_dict() == cfg.frames_dict()
    assert cfg.replace(style_weight=1.0).frames_dict() != cfg.frames_dict()


def test_step_size_depends_on_the_optimiser():
    assert Config().step_size == 1.0
    assert Config(optimizer="adam").step_size == 0.02
    assert Config(optimizer="adam", lr=0.1).step_size == 0.1
