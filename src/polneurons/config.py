"""Config validation at parse time: the JSON schema fills defaults; every problem is one line."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from polneurons.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def fill_defaults(instance, schema: dict, root: dict):
    """Fill `default:` values recursively (objects only), following local $refs."""
    if "$ref" in schema:
        ref = schema["$ref"].removeprefix("#/").split("/")
        target = root
        for part in ref:
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    if not isinstance(instance, dict) or schema.get("type", "object") != "object":
        return instance
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            instance[key] = fill_defaults(instance[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in set(instance) - set(schema.get("properties", {})):
            instance[key] = fill_defaults(instance[key], extra, root)
    return instance


def _describe(error) -> str:
    path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        hint = f"known keys here: {', '.join(allowed)}" if allowed else "remove it"
        return f"config key {path}: {error.message} -- fix: {hint}"
    if error.validator == "enum":
        return (
            f"config key {path}: {error.instance!r} is not allowed -- fix: use one of "
            f"{', '.join(map(str, error.validator_value))}"
        )
    return f"config key {path}: {error.message} -- fix: see workflow/schemas/config.schema.yaml"


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """A validated copy of `config` with every default filled; ConfigError (one line) otherwise."""
    import jsonschema

    schema = schema or load_schema()
    config = fill_defaults(copy.deepcopy(dict(config)), schema, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(_describe(errors[0]).removeprefix("config key "))
    _check_semantics(config)
    return config


def inhibitft_finetune(config: dict) -> dict:
    """The fine-tuning settings of InhibitFT and its vanilla control: `finetune` plus overrides."""
    merged = copy.deepcopy(config["finetune"])
    for key, value in config["inhibitft"]["finetune"].items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return merged


def _check_semantics(config: dict) -> None:
    missing = [t for t in config["source_topics"] if t not in config["topics"]]
    if missing:
        raise ConfigError(
            f"source_topics {missing} are not among topics",
            "add them to topics (their own shift TS is measured there)",
        )
    mirror = config["data"]["mirror"]
    if mirror and not Path(mirror).expanduser().is_dir():
        raise ConfigError(
            f"data.mirror {mirror} is not a folder",
            "point it at a copy of political_stance_data, or set it to null to download",
        )
    unknown = [m for m in config["models"] if m not in config["model_registry"]]
    if unknown:
        raise ConfigError(
            f"models {unknown} are not in model_registry",
            f"use one of {', '.join(config['model_registry'])} or add a model_registry entry",
        )
    for name in config["models"]:
        path = config["model_registry"][name]["path"]
        if path.startswith((".", "/", "~")) and not Path(path).expanduser().is_dir():
            raise ConfigError(f"models.{name}.path {path} is not a folder", "fix the path")
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(
                f"model name {name!r} may hold only letters, digits, '-' and '_'",
                "rename the key under models",
            )
    if config["inhibitft"]["enabled"]:
        from polneurons.inhibit import inhibition_problem

        ft = inhibitft_finetune(config)
        for strategy in config["inhibitft"]["strategies"]:
            reason = inhibition_problem(
                config["neurons"]["site"], strategy, ft["method"], ft["lora"]["target_modules"]
            )
            if reason:
                raise ConfigError(
                    f"InhibitFT cannot act: {reason}",
                    "train the MLP projections too (inhibitft.finetune.lora.target_modules), "
                    "or disable inhibitft",
                )
