"""Configuration: per-dataset stage settings and their typed forms.

The workflow config has one section per stage (``preprocess``, ``train``, ...) holding the
defaults, and each dataset may override any of them in a section of the same name. The
merged, plain-dict settings of one stage are what a rule receives as ``params``, so a
change to a value reruns exactly the stages that read it.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

STAGES = ("preprocess", "train", "features", "validate", "cluster", "neighbours", "anomaly", "active_learning")
T = TypeVar("T")


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``, recursing into nested mappings. The result shares
    no mapping or list with either input, so changing it changes neither."""
    merged = {key: copy.deepcopy(value) for key, value in base.items() if key not in override}
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            merged[key] = deep_merge(base[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return {key: merged[key] for key in [*base, *(key for key in override if key not in base)]}


def stage_settings(config: Mapping[str, Any], dataset: str, stage: str) -> dict[str, Any]:
    """The settings of ``stage`` for ``dataset``: global defaults merged with its overrides."""
    if dataset not in config.get("datasets", {}):
        raise KeyError(f"dataset {dataset!r} is not configured; known: {sorted(config.get('datasets', {}))}")
    return deep_merge(config.get(stage, {}), config["datasets"][dataset].get(stage, {}))


def check_dataset_settings(config: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """Check every dataset's merged settings of every stage against that stage's section of
    the config ``schema``, so an override under ``datasets.<name>.<stage>`` is held to the
    same keys, types and ranges as the global section. Raises ValueError naming the first
    offending setting (``datasets.<name>.<stage>.<key>``) and what is wrong with it."""
    from jsonschema import Draft202012Validator

    validators = {stage: Draft202012Validator(schema["properties"][stage]) for stage in STAGES}
    for dataset in config.get("datasets", {}):
        for stage, validator in validators.items():
            errors = sorted(validator.iter_errors(stage_settings(config, dataset, stage)), key=lambda e: list(e.path))
            if errors:
                where = ".".join(["datasets", dataset, stage, *(str(part) for part in errors[0].path)])
                raise ValueError(f"config: {where}: {errors[0].message}")


def check_known(values: Mapping[str, Any], allowed: typing.Iterable[str], where: str) -> None:
    """A key of ``values`` outside ``allowed`` is an error naming it, so a typo in the config
    fails loudly instead of being silently ignored."""
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {unknown}; allowed: {sorted(allowed)}")


def from_mapping(cls: type[T], values: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a plain mapping (YAML), recursing into nested dataclasses.

    Lists become tuples; an unknown key is an error naming it, so a typo in the config
    fails loudly instead of being silently ignored.
    """
    where = where or cls.__name__
    fields = {field.name: field for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    check_known(values, fields, where)
    hints = typing.get_type_hints(cls)
    kwargs = {name: _convert(hints[name], value, f"{where}.{name}") for name, value in values.items()}
    return cls(**kwargs)


def _convert(hint: Any, value: Any, where: str) -> Any:
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    for option in options:
        if dataclasses.is_dataclass(option) and isinstance(value, Mapping):
            return from_mapping(option, value, where)  # type: ignore[arg-type]
    if not any(_fits(option, value) for option in options):
        # Outside Snakemake nothing else checks types: YAML reads 1e-3 as text, "no" stays a string.
        wanted = " or ".join(getattr(option, "__name__", str(option)) for option in options)
        raise ValueError(f"{where} must be {wanted}, got {value!r} ({type(value).__name__})")
    if isinstance(value, list):
        return tuple(value)
    return value


def _fits(hint: Any, value: Any) -> bool:
    """Whether ``value`` (from YAML or JSON) is of type ``hint``: an int is a float, a bool is
    not a number, a list is a tuple; hints it does not know accept anything."""
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if typing.get_origin(hint) is tuple or hint is tuple:
        return isinstance(value, (list, tuple))
    return True


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)
