"""Config validation at parse time: the JSON schema fills defaults; every problem is one line."""

from __future__ import annotations

import copy
import difflib
import math
import os
from pathlib import Path

import yaml

from polneurons.errors import ConfigError

# package data (pyproject), so a non-editable install validates too; workflow/schemas/ links here
SCHEMA_PATH = Path(__file__).resolve().parent / "config.schema.yaml"


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def fill_defaults(instance, schema: dict, root: dict):
    """Fill `default:` values recursively (objects only), following local $refs."""
    schema = _resolve(schema, root)
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


def _resolve(schema: dict, root: dict) -> dict:
    """`schema` with a local $ref merged in (the referring keys win)."""
    if "$ref" not in schema:
        return schema
    target = root
    for part in schema["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}


_YAML_TRUE = ("true", "yes", "on")
_YAML_FALSE = ("false", "no", "off")


def _coerce_scalar(value: str, types: list[str]):
    """A --config string as the type the schema wants, if it reads as one; else unchanged."""
    text = value.strip()
    if "null" in types and text.lower() in ("null", "~", "none", ""):
        return None
    if "string" in types:
        return value
    if "boolean" in types and text.lower() in _YAML_TRUE + _YAML_FALSE:
        return text.lower() in _YAML_TRUE
    if "integer" in types:
        try:
            return int(text)
        except ValueError:
            pass
    if "number" in types:
        try:
            number = float(text)
            return (
                int(number)
                if number.is_integer() and "." not in text and "e" not in text.lower()
                else number
            )
        except ValueError:
            pass
    return value


def coerce_cli_strings(instance, schema: dict, root: dict):
    """Snakemake reads nested `--config 'key={a: 5}'` values as strings ('5', 'null', 'true');
    turn them into the number, boolean or null the schema expects there. Under a oneOf, the
    first option that reads the value (a list only as an array option) wins."""
    schema = _resolve(schema, root)
    if "oneOf" in schema:
        for option in (_resolve(option, root) for option in schema["oneOf"]):
            if isinstance(instance, list) != (option.get("type") == "array"):
                continue
            coerced = coerce_cli_strings(instance, option, root)
            if not isinstance(coerced, str):
                return coerced
        return instance
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if isinstance(instance, str):
        return _coerce_scalar(instance, types) if types else instance
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [coerce_cli_strings(item, schema["items"], root) for item in instance]
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in instance.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                instance[key] = coerce_cli_strings(value, sub, root)
    return instance


def _expectation(schema: dict, root: dict) -> str:
    """What a schema accepts, in words: 'a number > 0 and <= 100', 'one of a, b', 'a list of ...'."""
    schema = _resolve(schema, root)
    if "oneOf" in schema:
        return " or ".join(_expectation(option, root) for option in schema["oneOf"])
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    words = {
        "integer": "an integer",
        "number": "a number",
        "string": "a string",
        "boolean": "true or false",
        "array": "a list",
        "object": "a mapping",
        "null": "null",
    }
    text = " or ".join(words.get(t, t) for t in types) or "a value"
    bounds = []
    for key, op in (
        ("exclusiveMinimum", ">"),
        ("minimum", ">="),
        ("exclusiveMaximum", "<"),
        ("maximum", "<="),
    ):
        if key in schema:
            bounds.append(f"{op} {schema[key]}")
    if bounds:
        text += " " + " and ".join(bounds)
    if "minItems" in schema:
        text += f" of at least {schema['minItems']} item(s)"
    if isinstance(schema.get("items"), dict) and "array" in types:
        text += f", each {_expectation(schema['items'], root)}"
    if schema.get("uniqueItems"):
        text += ", without repeats"
    return text


def _describe(error, root: dict, prefix: str = "") -> str:
    path = ".".join(
        [prefix, *map(str, error.absolute_path)] if prefix else map(str, error.absolute_path)
    )
    where = f"config key {path}" if path else "the config (top level)"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        guesses = {key: difflib.get_close_matches(key, allowed, n=1, cutoff=0.6) for key in unknown}
        hints = [f"rename {key!r} to {guesses[key][0]!r}" for key in unknown if guesses[key]]
        others = [key for key in unknown if not guesses[key]]
        if others:
            known = f"; known keys here: {', '.join(allowed)}" if allowed else ""
            hints.append(f"remove {', '.join(map(repr, others))}{known}")
        return f"{where}: unknown key(s) {', '.join(map(repr, unknown))} -- fix: {'; '.join(hints)}"
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in (error.instance or {})]
        return f"{where}: missing required key(s) {', '.join(missing)} -- fix: add them"
    value = error.instance
    shown = repr(value) if not isinstance(value, (dict, list)) or len(str(value)) < 60 else "value"
    if error.validator == "enum":
        return (
            f"{where}: {shown} is not allowed -- fix: use one of "
            f"{', '.join(map(str, error.validator_value))}"
        )
    if error.validator == "uniqueItems":
        return f"{where}: {shown} repeats an item -- fix: list each item once"
    return f"{where}: {shown} is invalid ({error.message}) -- fix: set it to {_expectation(error.schema, root)}"


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """A validated copy of `config` with every default filled; ConfigError (one line) otherwise."""
    import jsonschema

    schema = schema or load_schema()
    config = coerce_cli_strings(copy.deepcopy(dict(config)), schema, schema)
    config = fill_defaults(config, schema, schema)
    _first_error(jsonschema.Draft202012Validator(schema), config, schema)
    # inhibitft.finetune overrides `finetune` key by key: the same keys and types apply
    overrides = config.get("inhibitft", {}).get("finetune", {})
    finetune_schema = {**schema["definitions"]["finetune"], "definitions": schema["definitions"]}
    overrides = coerce_cli_strings(overrides, finetune_schema, schema)
    _first_error(
        jsonschema.Draft202012Validator(finetune_schema), overrides, schema, "inhibitft.finetune"
    )
    _check_semantics(config)
    return config


def _first_error(validator, instance, root: dict, prefix: str = "") -> None:
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError(_describe(errors[0], root, prefix))


def merge_overlay(config: dict, overlay: dict) -> None:
    """Merge `overlay` into `config` in place, as Snakemake stacks --configfile files: nested
    mappings key by key, anything else replaced (by a copy)."""
    import copy

    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            merge_overlay(config[key], value)
        else:
            config[key] = copy.deepcopy(value)


def check_stack(configfiles) -> None:
    """Refuse an overlay (a config file with `extends: <base file>`) given without its base
    before it: alone, it would run the schema defaults (the full paper protocol) under it."""
    given = [Path(f).expanduser().resolve() for f in configfiles]
    for position, path in enumerate(given):
        try:
            text = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue  # Snakemake itself reports a config file it cannot read
        base = text.get("extends") if isinstance(text, dict) else None
        if not base:
            continue
        wanted = (path.parent / base).resolve()
        if wanted not in given[:position]:
            # both named from the overlay's folder's parent (the repository for configs/)
            root = path.parent.parent
            raise ConfigError(
                f"{path.name} is an overlay of {base} (its `extends`), given without it",
                f"run with --configfile {os.path.relpath(wanted, root)} "
                f"{os.path.relpath(path, root)}",
            )


def inhibitft_finetune(config: dict) -> dict:
    """The fine-tuning settings of InhibitFT and its vanilla control: `finetune` plus overrides."""
    merged = copy.deepcopy(config["finetune"])
    for key, value in config["inhibitft"]["finetune"].items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return merged


# data keys that say where the pinned files come from, not what they are (sha256-checked)
DATA_LOCATION_KEYS = ("base_url", "mirror")


def pool_sizes(config: dict) -> dict:
    """How many pairs of each topic every data pool takes (`data.topic_pools`): the one param
    of every rule that reads a pool, so that all of them cut the same pools.

    The judge pool is carved out only for the classifier judge (the others are not trained),
    the readout pool only where the readout runs (`readout_planned`);
    held-out localization prompts are as many per topic as the evaluation prompts.
    """
    data = config["data"]
    held_out = config["neurons"]["localize_prompts"] == "held_out"
    return {
        "loglik_pairs": data["loglik_pairs"],
        "perplexity_texts": config["perplexity"]["texts"],
        "localize_prompts": (data["eval_prompts"] or 100) if held_out else 0,
        "judge_pairs": data["judge_pairs"] if config["judge"]["backend"] == "classifier" else 0,
        "readout_pairs": data["readout_pairs"] if readout_planned(config) else 0,
        "holdout_eval": data["holdout_eval"],
    }


def readout_planned(config: dict) -> bool:
    """Whether the teacher-forced readout runs: with patching and a readout pool
    (data.readout_pairs > 0). Without it no pool is cut for it (method.md, "Data pools")."""
    return config["patching"]["enabled"] and config["data"]["readout_pairs"] > 0


# the PNLAC recipe: what a localization reads of `neurons` (docs/method.md, "Contrast variants");
# a change of it relocalizes without redoing the dumps
LOCALIZATION_RECIPE = ("tokens", "contrast", "rank_within")


def localization_recipe(config: dict) -> dict:
    """{key: value} of the PNLAC recipe of a validated config (`LOCALIZATION_RECIPE`).

    >>> localization_recipe({"neurons": {"tokens": "all", "contrast": "rms", "rank_within": "all"}})
    {'tokens': 'all', 'contrast': 'rms', 'rank_within': 'all'}
    """
    return {key: config["neurons"][key] for key in LOCALIZATION_RECIPE}


def data_settings(data: dict) -> dict:
    """The data keys that change a result: all but where the files come from (DATA_LOCATION_KEYS).

    The files are pinned by sha256, so a mirror or base URL cannot change them; leaving the
    location out of every rule's params keeps a switch of mirror from rerunning anything.
    """
    return {key: value for key, value in data.items() if key not in DATA_LOCATION_KEYS}


def _check_pools(config: dict) -> None:
    """Refuse, at parse time, a data pool that would be empty (data.pool_problem; the classifier
    judge's held-out split of its pool)."""
    from polneurons.data import TOPICS, pool_problem

    sizes = pool_sizes(config)
    # a run cuts the pools of its topics; train_judge, those of all six (the judge learns them all)
    judged = TOPICS if config["judge"]["backend"] == "classifier" else ()
    problem = pool_problem(sizes, dict.fromkeys([*config["topics"], *judged]))
    if problem:
        raise ConfigError(*problem)
    if config["judge"]["backend"] == "classifier":
        groups = sizes["judge_pairs"] * len(TOPICS)  # an instruction is a group
        fraction = config["judge"]["classifier"]["test_fraction"]
        if math.ceil(fraction * groups) >= groups:
            raise ConfigError(
                f"judge.classifier.test_fraction {fraction} of {groups} judge instructions "
                "leaves the classifier judge no training split",
                "lower judge.classifier.test_fraction or raise data.judge_pairs",
            )


def _check_semantics(config: dict) -> None:
    _check_pools(config)
    missing = [t for t in config["source_topics"] if t not in config["topics"]]
    if missing:
        raise ConfigError(
            f"source_topics {missing} are not among topics",
            "add them to topics (their own shift TS is measured there)",
        )
    for stage, needs in (("inhibitft", "InhibitFT"), ("patching", "patching")):
        chosen = config[stage]["source_topics"] or []
        outside = [t for t in chosen if t not in config["source_topics"]]
        if outside:
            raise ConfigError(
                f"{stage}.source_topics {outside} are not among source_topics",
                f"{needs} needs the vanilla run of its source topic: add them to source_topics",
            )
    outside = [
        lean for lean in config["neurons"]["leanings"] or [] if lean not in config["leanings"]
    ]
    if outside:
        raise ConfigError(
            f"neurons.leanings {outside} are not among leanings",
            "neurons are localized on vanilla fine-tunes: add them to leanings",
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
            raise ConfigError(
                f"model_registry.{name}.path {path} is not a folder",
                "point it at a checkpoint folder (with config.json), or use a Hugging Face id",
            )
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(
                f"model name {name!r} may hold only letters, digits, '-' and '_'",
                "rename the key under models",
            )
    conditions = config["patching"]["conditions"]
    for needs_specific in ("crossed", "specific_random"):
        if needs_specific in conditions and "specific" not in conditions:
            raise ConfigError(
                f"patching.conditions has {needs_specific} but not specific",
                f"add specific: {needs_specific} is compared with S_t patched on its own topic",
            )
    if "null_general" in conditions and not config["null_finetune"]:
        raise ConfigError(
            "patching.conditions has null_general but null_finetune is off",
            "set null_finetune: true (G_null comes from the null fine-tune)",
        )
    sweep = config["inhibitft"]["n"]
    for key in ("random_control", "null_control", "restore"):
        control = config["inhibitft"][key]
        stray = [n for n in control if n not in sweep] if isinstance(control, list) else []
        if stray:
            raise ConfigError(
                f"inhibitft.{key} {stray} are not among inhibitft.n",
                f"list only values of inhibitft.n (or set {key} to true or false)",
            )
    null_control = (
        config["inhibitft"]["enabled"] and config["inhibitft"]["null_control"] is not False
    )
    if null_control and not config["null_finetune"]:
        raise ConfigError(
            "inhibitft.null_control is set but null_finetune is off",
            "set null_finetune: true (the null control inhibits F_n of the null fine-tune's G_null)",
        )
    if config["inhibitft"]["enabled"]:
        from polneurons.inhibit import inhibition_problem

        ft = inhibitft_finetune(config)
        if config["inhibitft"]["restore"] is not False and ft["method"] != "lora":
            raise ConfigError(
                "inhibitft.restore needs LoRA: M0's values are read with the adapter off",
                "set inhibitft.finetune.method: lora, or inhibitft.restore: false",
            )
        for strategy in config["inhibitft"]["strategies"]:
            reason = inhibition_problem(
                config["neurons"]["site"], strategy, ft["method"], ft["lora"]["target_modules"]
            )
            if reason and strategy == "anchor" and ft["method"] != "lora":
                raise ConfigError(
                    f"InhibitFT cannot act: {reason}",
                    "set inhibitft.finetune.method: lora, or drop anchor from inhibitft.strategies",
                )
            if reason:
                raise ConfigError(
                    f"InhibitFT cannot act: {reason}",
                    "train the MLP projections too (inhibitft.finetune.lora.target_modules), "
                    "or disable inhibitft",
                )
