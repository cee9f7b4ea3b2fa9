"""One configuration source: ranges are enforced and the CLI and pipeline share every option."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from melanoma_mlops import cli, config
from melanoma_mlops.errors import ConfigError


def test_defaults_follow_the_protocol() -> None:
    c = config.TrainConfig()
    assert c.stage2_lr == 1e-5
    assert c.stage1_lr == 1e-3
    assert c.weights == "imagenet"
    assert c.bn_inference is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image_size": 8}, "--image-size 8 is outside"),
        ({"stage2_lr": 5.0}, "--stage2-lr 5.0 is outside"),
        ({"val_fraction": 0.4, "test_fraction": 0.4}, "leave under 20%"),
        ({"threshold_rule": "magic"}, "--threshold-rule 'magic' is not one of"),
        ({"weights": ""}, "--weights is empty"),
    ],
)
def test_out_of_range_values_name_the_option(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.TrainConfig(**change)


def test_cli_options_cover_every_config_field_and_explicit_beats_preset() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["run", "--image-size", "48", "--no-augment"])
    c = cli.config_from_args(args, {"image_size": 64, "stage1_epochs": 2})
    assert c.image_size == 48  # explicit option wins over the preset
    assert c.stage1_epochs == 2  # preset wins over the default
    assert c.augment is False
    assert c.stage2_lr == config.TrainConfig().stage2_lr


def test_pipeline_parameters_are_the_config_fields_with_the_same_defaults() -> None:
    from melanoma_pipelines.dag import build_pipeline

    fn = build_pipeline().pipeline_func
    params = inspect.signature(fn).parameters
    for f in dataclasses.fields(config.TrainConfig):
        assert f.name in params, f"pipeline lacks parameter {f.name}"
        assert params[f.name].default == f.default, f.name
