from pathlib import Path

import pytest
import yaml
from byol_discovery.augmentation import AugmentationConfig
from byol_discovery.config import check_dataset_settings, deep_merge, from_mapping, stage_settings
from byol_discovery.stages.acquire import check_sources
from byol_discovery.training import TrainConfig

CONFIG = {
    "train": {"epochs": 4, "batch_size": 64, "augmentation": {"blur_p": 0.5, "flip": True}},
    "datasets": {
        "radio": {"source": {"type": "local"}, "train": {"epochs": 10, "augmentation": {"blur_p": 0.0}}},
        "optical": {"source": {"type": "local"}},
    },
}


def test_dataset_overrides_only_the_values_it_names() -> None:
    assert stage_settings(CONFIG, "radio", "train") == {
        "epochs": 10,
        "batch_size": 64,
        "augmentation": {"blur_p": 0.0, "flip": True},
    }
    assert stage_settings(CONFIG, "optical", "train") == CONFIG["train"]


def test_unknown_dataset_is_named() -> None:
    with pytest.raises(KeyError, match="'nope' is not configured"):
        stage_settings(CONFIG, "nope", "train")


def test_deep_merge_leaves_inputs_untouched() -> None:
    base = {"a": {"b": 1}}
    deep_merge(base, {"a": {"b": 2}})
    assert base == {"a": {"b": 1}}
    base = {"a": {"x": [1]}, "c": {"d": 1}}
    override = {"c": {"e": [2]}}
    merged = deep_merge(base, override)
    merged["a"]["x"].append(9)
    merged["a"]["y"] = 3
    merged["c"]["e"].append(9)
    assert base == {"a": {"x": [1]}, "c": {"d": 1}} and override == {"c": {"e": [2]}}, "no nested value is shared"


def test_from_mapping_builds_nested_dataclasses_and_tuples() -> None:
    config = from_mapping(TrainConfig, {"epochs": 2, "augmentation": {"crop_scale": [0.5, 1.0]}})
    assert config.epochs == 2
    assert isinstance(config.augmentation, AugmentationConfig) and config.augmentation.crop_scale == (0.5, 1.0)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"learning_rate": "1e-3"}, r"train.learning_rate must be float, got '1e-3' \(str\)"),
        ({"epochs": True}, r"train.epochs must be int, got True"),
        ({"batch_size": 32.5}, r"train.batch_size must be int, got 32.5"),
        ({"num_threads": "2"}, r"train.num_threads must be int or NoneType, got '2'"),
        ({"augmentation": {"rotate": "no"}}, r"train.augmentation.rotate must be bool, got 'no'"),
        ({"augmentation": {"blur_sigma": 1.5}}, r"train.augmentation.blur_sigma must be tuple"),
    ],
)
def test_from_mapping_names_a_value_of_the_wrong_type(values: dict, message: str) -> None:
    """Outside Snakemake (the API, the benchmarks) no schema checks types first."""
    with pytest.raises(ValueError, match=message):
        from_mapping(TrainConfig, values, "train")


def test_from_mapping_takes_an_int_for_a_float() -> None:
    assert from_mapping(TrainConfig, {"learning_rate": 1}).learning_rate == 1


def test_from_mapping_names_a_misspelt_setting() -> None:
    with pytest.raises(ValueError, match=r"train.augmentation: unknown setting\(s\) \['blurr_p'\]"):
        from_mapping(TrainConfig, {"augmentation": {"blurr_p": 0.1}}, "train")


def test_paper_preset_is_the_papers_training_configuration() -> None:
    preset = yaml.safe_load((Path(__file__).parents[2] / "config" / "presets" / "paper.yaml").read_text())
    config = from_mapping(TrainConfig, preset["train"], "train")
    assert (config.arch, config.optimizer, config.learning_rate, config.batch_size) == ("resnet18", "adam", 1e-4, 32)
    assert (config.tau, config.tau_schedule, config.select) == (0.99, "constant", "best_val")
    assert config.augmentation == AugmentationConfig(), "the augmentation defaults are the paper's"


REPO = Path(__file__).parents[2]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


@pytest.mark.parametrize("config_file", ["config.yaml", "mirabest.yaml", "gz_decals.yaml"])
def test_shipped_configs_pass_the_per_dataset_check(config_file: str) -> None:
    check_dataset_settings(yaml.safe_load((REPO / "config" / config_file).read_text()), SCHEMA)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"validate": {"n_split": 10}}, r"datasets.radio.validate: Additional properties .*'n_split'"),
        ({"anomaly": {"top_n": 0}}, r"datasets.radio.anomaly.top_n: 0 is less than the minimum of 1"),
        ({"cluster": {"gmm": {"n_init": "ten"}}}, r"datasets.radio.cluster.gmm.n_init: 'ten' is not of type"),
        ({"train": {"augmentation": {"blur_sigma": 1.5}}},
         r"datasets.radio.train.augmentation.blur_sigma: 1.5 is not of type 'array'"),
        ({"train": {"augmentation": {"rotation_p": "0.5"}}},
         r"datasets.radio.train.augmentation.rotation_p: '0.5' is not of type 'number'"),
    ],
)
def test_a_bad_dataset_override_is_named(override: dict, message: str) -> None:
    config = {"datasets": {"optical": {"source": {"type": "local"}},
                           "radio": {"source": {"type": "local"}, **override}}}
    with pytest.raises(ValueError, match=message):
        check_dataset_settings(config, SCHEMA)


@pytest.mark.parametrize("config_file", ["config.yaml", "mirabest.yaml", "gz_decals.yaml"])
def test_shipped_configs_sources_parse(config_file: str) -> None:
    check_sources(yaml.safe_load((REPO / "config" / config_file).read_text()))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"type": "firstgalaxydata", "splitz": ["train"]}, r"datasets.radio.source \(firstgalaxydata\): .*'splitz'"),
        ({"type": "local"}, r"datasets.radio.source \(local\): needs 'catalogue'"),
        ({"type": "mirabest", "urll": "https://example.org"}, r"datasets.radio.source: .*'urll'"),
        ({"type": "legacy_survey", "catalogue": "positions.csv", "cutout": {}}, r"datasets.radio.source: .*'cutout'"),
        ({"type": "gz_decals", "images": {"type": "gz_png", "pth": "zips"}}, r"datasets.radio.source.images: .*'pth'"),
        ({"type": "simulated_optical", "n_objects": "many"}, r"datasets.radio.source.n_objects must be int"),
    ],
)
def test_a_bad_source_setting_is_named_before_anything_runs(source: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_sources({"datasets": {"radio": {"source": source}}})


def test_the_schema_names_every_augmentation_setting_and_no_other() -> None:
    import dataclasses

    from byol_discovery.augmentation import AugmentationConfig

    schema = SCHEMA["properties"]["train"]["properties"]["augmentation"]["properties"]
    assert sorted(schema) == sorted(field.name for field in dataclasses.fields(AugmentationConfig))
