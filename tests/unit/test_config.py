"""One configuration source: ranges are enforced and the CLI and pipeline share every option."""

from __future__ import annotations

import inspect

import pytest

from melanoma_mlops import config
from melanoma_mlops.errors import ConfigError
from melanoma_pipelines import cli
from melanoma_pipelines.cli.options import config_from_args
from melanoma_pipelines.params import ABLATION_GROUPS, MAIN_GROUPS


def test_defaults_follow_the_protocol() -> None:
    c = config.RunConfig()
    assert c.training.stage2_lr == 1e-5
    assert c.training.stage1_lr == 1e-3
    assert c.training.weights == "imagenet"
    assert c.training.bn_inference is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image_size": 8}, "--image-size 8 is outside"),
        ({"stage2_lr": 5.0}, "--stage2-lr 5.0 is outside"),
        ({"val_fraction": 0.4, "test_fraction": 0.4}, "leave under 20%"),
        ({"threshold_rule": "magic"}, "--threshold-rule 'magic' is not one of"),
        ({"weights": ""}, "--weights is empty"),
        ({"seed": -1}, "--seed -1 is outside"),
        ({"layout": "zip"}, "--layout 'zip' is not one of"),
        ({"no_such_option": 1}, "unknown option"),
    ],
)
def test_out_of_range_values_name_the_option(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.RunConfig.from_params(change)


def test_field_names_are_unique_across_the_groups() -> None:
    names = config.field_names()
    assert len(names) == len(set(names))
    assert config.RunConfig.from_params(config.RunConfig().as_params()) == config.RunConfig()


def test_cli_options_cover_every_config_field_and_explicit_beats_preset() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["run", "--image-size", "48", "--no-augment"])
    c = config_from_args(args, {"image_size": 64, "stage1_epochs": 2})
    assert c.training.image_size == 48  # explicit option wins over the preset
    assert c.training.stage1_epochs == 2  # preset wins over the default
    assert c.training.augment is False
    assert c.training.stage2_lr == config.TrainingConfig().stage2_lr
    run_options = {a.dest for a in parser._subparsers._group_actions[0].choices["run"]._actions}
    assert {"seed", *config.field_names(*MAIN_GROUPS)} <= run_options


def test_pipeline_parameters_are_the_config_fields_with_the_same_defaults() -> None:
    from melanoma_pipelines.ablation_dag import build_ablation_pipeline
    from melanoma_pipelines.dag import build_pipeline

    defaults = config.RunConfig().as_params()
    for fn, groups in (
        (build_pipeline().pipeline_func, MAIN_GROUPS),
        (build_ablation_pipeline().pipeline_func, ABLATION_GROUPS),
    ):
        params = inspect.signature(fn).parameters
        for name in config.field_names(*groups):
            assert name in params, f"pipeline lacks parameter {name}"
            assert params[name].default == defaults[name], name


def test_the_demo_preset_names_real_fields() -> None:
    assert set(config.DEMO_PRESET) <= set(config.field_names())
