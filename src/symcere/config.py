"""Configuration: the typed schema's defaults, a preset, user YAML files and ``--set`` overrides, validated.

The schema (``symcere.schema``) is the only source of defaults. Layers are applied in order — defaults ->
preset (``configs/<model>.<preset>.yaml``) -> user files -> overrides — and every layer is validated against
the schema by one validator (``validate``), which also serves experiment plans and the synthetic generator:
an unknown key names the nearest valid key, a wrong type names the expected type. A resolved configuration is
a plain nested dict holding every effective value.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from symcere.errors import ConfigError, SymcereError
from symcere.schema import SCHEMAS

Config = dict[str, Any]


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads exponent floats without a dot (``5e-4``, ``1E3``) as floats.

    Plain PyYAML keeps ``5e-4`` a STRING, so ``lr: 5e-4`` in a user file would reach the code as text."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: Path | Any, what: str) -> Config:
    """A YAML file holding a mapping; errors name the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SymcereError(f"{what} not found: {path}") from exc
    try:
        data = load_yaml(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SymcereError(f"{what} {path}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise SymcereError(f"{what} {path} must hold a mapping of sections (e.g. 'train:'), got {type(data).__name__}")
    return data


def _shipped(name: str) -> Any:
    return resources.files("symcere").joinpath("configs", name)


def available_models() -> list[str]:
    return sorted(SCHEMAS)


def available_presets(model: str) -> list[str]:
    prefix = f"{model}."
    files = resources.files("symcere").joinpath("configs").iterdir()
    return sorted(p.name[len(prefix) : -len(".yaml")] for p in files if p.name.startswith(prefix))


# -- the one validator -----------------------------------------------------------------------------------------
def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(hint))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _fits(hint: Any, value: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(a, value) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_fits(typing.get_args(hint)[0], v) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def validate(cls: type, layer: Mapping[str, Any], where: str = "") -> None:
    """Check that ``layer`` (a partial nested mapping) fits the dataclass ``cls``; raise ``ConfigError`` naming
    the key, the nearest valid key or the expected type."""
    hints = _hints(cls)
    for key, value in layer.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in hints:
            options = [f"{where}.{k}" if where else k for k in hints]
            near = difflib.get_close_matches(dotted, options, n=1, cutoff=0.5)
            hint = f"; did you mean '{near[0]}'?" if near else f"; valid keys here: {', '.join(sorted(options))}"
            raise ConfigError(f"unknown config key '{dotted}'{hint}")
        hint_t = hints[key]
        if dataclasses.is_dataclass(hint_t):
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"config key '{dotted}' is a section: set its keys ({dotted}.KEY=VALUE), got {value!r}"
                )
            validate(hint_t, value, dotted)
        elif isinstance(value, Mapping):
            raise ConfigError(f"config key '{dotted}' is a single value, not a section; got {value!r}")
        elif not _fits(hint_t, value):
            if hint_t is float and isinstance(value, str):
                value_s = f"{value!r} (a string)"
            else:
                value_s = repr(value)
            raise ConfigError(f"config key '{dotted}' expects {_type_name(hint_t)}, got {value_s}")


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> Config:
    """``base`` updated by ``update`` (recursively; ``update`` must already be validated)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def build(cls: type, layers: Iterable[Mapping[str, Any]] = ()) -> Any:
    """An instance of the dataclass ``cls``: its defaults updated by each validated layer in turn."""
    cfg = dataclasses.asdict(cls())
    for layer in layers:
        validate(cls, layer)
        cfg = merge(cfg, layer)
    return _instance(cls, cfg)


def _coerce(hint: Any, value: Any) -> Any:
    """Integers given for a float field become floats (``lr: 1`` and ``lr: 1.0`` are one configuration)."""
    floats = hint is float or (
        typing.get_origin(hint) in (typing.Union, types.UnionType) and float in typing.get_args(hint)
    )
    return float(value) if floats and isinstance(value, int) and not isinstance(value, bool) else value


def _instance(cls: type, values: Mapping[str, Any]) -> Any:
    hints = _hints(cls)
    kwargs = {
        k: _instance(hints[k], v) if dataclasses.is_dataclass(hints[k]) else _coerce(hints[k], v)
        for k, v in values.items()
    }
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def nested(layer: Mapping[str, Any]) -> Config:
    """Dotted keys of a mapping expanded into sections: ``{'train.lr': 1}`` -> ``{'train': {'lr': 1}}``."""
    out: Config = {}
    for key, value in layer.items():
        parts = [p for p in str(key).split(".") if p]
        if not parts:
            raise ConfigError(f"empty config key in {dict(layer)!r}")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key '{key}' sets a key inside a single value")
        node[parts[-1]] = nested(value) if isinstance(value, Mapping) else value
    return out


def parse_override(text: str) -> Config:
    """``'train.lr=5e-4'`` -> ``{'train': {'lr': 0.0005}}`` (the value is parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value (e.g. train.lr=5e-4)")
    key, raw = text.split("=", 1)
    if not key.strip().strip("."):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc})") from exc
    return nested({key.strip(): value})


def as_layer(spec: Mapping[str, Any] | Iterable[str] | None) -> Config:
    """A settings layer from a mapping (nested or dotted keys) or a list of ``key=value`` strings."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        return nested(spec)
    if isinstance(spec, str):
        return parse_override(spec)
    layer: Config = {}
    for item in spec:
        layer = merge(layer, parse_override(str(item)))
    return layer


# -- model configurations ------------------------------------------------------------------------------------
def _check_model(model: str) -> type:
    if model not in SCHEMAS:
        near = difflib.get_close_matches(model, available_models(), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"unknown model '{model}'{hint} (available: {', '.join(available_models())})")
    return SCHEMAS[model]


def preset_layer(model: str, preset: str) -> Config:
    """What preset ``preset`` of ``model`` changes (its YAML file)."""
    if preset not in available_presets(model):
        presets = ", ".join(available_presets(model)) or "none"
        raise ConfigError(f"unknown preset '{preset}' for model '{model}' (available: {presets})")
    return read_yaml(_shipped(f"{model}.{preset}.yaml"), "preset")


def load_config(
    model: str,
    *,
    preset: str | None = None,
    files: Iterable[str | Path] = (),
    overrides: Iterable[str] | Mapping[str, Any] = (),
) -> Config:
    """Resolve a model's configuration: schema defaults -> preset -> user files -> overrides.

    ``overrides`` are ``key=value`` strings or a mapping (nested or dotted keys). The preset may also be named
    by a file or an override (``preset: paper``); the last one named wins."""
    cls = _check_model(model)
    layers = [read_yaml(Path(f), "config file") for f in files] + [as_layer(overrides)]
    if preset is None:
        preset = cls().preset  # the model's default preset, unless a file or an override names another
    for layer in layers:
        validate(cls, layer)
        if "preset" in layer:
            preset = layer["preset"]
    chosen = [preset_layer(model, preset)] if preset else []
    for layer in chosen:
        validate(cls, layer, where="")
    cfg = dataclasses.asdict(build(cls, [*chosen, *layers]))
    cfg["preset"] = preset or None
    if cfg["model"]["name"] != model:
        raise ConfigError(f"config sets model.name={cfg['model']['name']!r} but the model is {model!r}")
    return cfg


def options(cfg: Mapping[str, Any]) -> Any:
    """The typed configuration object of a resolved configuration (``cfg['model']['name']`` picks the class)."""
    cls = _check_model(str(cfg["model"]["name"]))
    return build(cls, [{k: v for k, v in cfg.items()}])


# -- runs written before the typed schema --------------------------------------------------------------------
#: renamed keys (old dotted key -> new dotted key), per model ("*" = every model)
RENAMED: dict[str, dict[str, str]] = {
    "*": {"model.preset": "preset", "loss.tau": "loss.ssm_tau"},
    "symcere": {
        "loss.tau": "loss.cross_tau",
        "loss.edge_dropout": "views.edge_dropout",
        "loss.view_every": "views.every",
    },
    "sgl": {"model.edge_dropout": "views.edge_dropout", "model.view_every": "views.every"},
    "dgclr": {
        "model.text_model": "text.model",
        "model.text_max_tokens": "text.max_tokens",
        "model.text_batch_size": "text.batch_size",
        "model.text_cache_dir": "text.cache_dir",
    },
}
#: SymCERE research variants removed from the model (docs/RESULTS.md; the code is at commit bd9493f): a run that
#: used one at another value than this cannot be rebuilt by this version
REMOVED: dict[str, dict[str, Any]] = {
    "symcere": {
        "model.align": "interaction",
        "model.score": "graph",
        "model.fuse_weight": None,
        "model.popularity_prior": 0.0,
        "model.text_in_graph": False,
        "loss.intra_graph": "interaction",
        "loss.warmup_epochs": 0,
        "loss.rec": "bpr",
        "loss.rec_tau": None,
        "loss.rec_mask": None,
    },
}
#: keys added after 0.1.0, with the value that reproduces the behaviour of a run saved before they existed
ADDED: dict[str, Any] = {"loss.ssm_mask": False}
#: values renamed with their key
RENAMED_VALUES: dict[tuple[str, str], dict[Any, Any]] = {
    ("dgclr", "model.text_features"): {"minilm": "text"},
}


def _pop(cfg: Config, dotted: str) -> tuple[bool, Any]:
    *path, last = dotted.split(".")
    node: Any = cfg
    for p in path:
        node = node.get(p) if isinstance(node, dict) else None
    if isinstance(node, dict) and last in node:
        return True, node.pop(last)
    return False, None


def _put(cfg: Config, dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    node = cfg
    for p in path:
        node = node.setdefault(p, {})
    node[last] = value


def migrate(saved: Mapping[str, Any], source: str = "config.yaml") -> Config:
    """A configuration saved by an earlier version, in today's keys (values kept); then validated and completed
    with today's defaults. Settings of removed variants at a non-neutral value are an error naming them."""
    cfg = copy.deepcopy(dict(saved))
    model = str((cfg.get("model") or {}).get("name"))
    _check_model(model)
    renames = {**RENAMED["*"], **RENAMED.get(model, {})}
    for old, new in renames.items():
        found, value = _pop(cfg, old)
        if found:
            _put(cfg, new, value)
    for (owner, dotted), mapping in RENAMED_VALUES.items():
        if owner in ("*", model):
            found, value = _pop(cfg, dotted)
            if found:
                _put(cfg, dotted, mapping.get(value, value) if isinstance(value, str) else value)
    for dotted, before in ADDED.items():
        section, key = dotted.split(".")
        if dataclasses.is_dataclass(_hints(SCHEMAS[model]).get(section)) and key in _hints(
            _hints(SCHEMAS[model])[section]
        ):
            if isinstance(cfg.get(section), dict) and key not in cfg[section]:
                cfg[section][key] = before
    for dotted, neutral in REMOVED.get(model, {}).items():
        found, value = _pop(cfg, dotted)
        if found and neutral is not None and value != neutral:
            raise SymcereError(
                f"{source} uses {dotted}={value!r}, a research variant removed from this version "
                "(docs/RESULTS.md lists its results; symcere commit bd9493f has its code)"
            )
    if model == "symcere" and isinstance(cfg.get("text"), dict):
        cfg["text"].setdefault("item_pooling", "concat")  # the key's value before it existed
    return dataclasses.asdict(build(SCHEMAS[model], [cfg]))


def changed_keys(
    saved: Mapping[str, Any], cfg: Mapping[str, Any], *, ignore: Iterable[str] = (), source: str = "config.yaml"
) -> list[str]:
    """The dotted keys (other than ``ignore``) where a run's saved configuration, migrated to today's keys and
    defaults, differs from the resolved ``cfg``."""
    before = flatten(json.loads(json.dumps(migrate(saved, source), default=str)))
    now = flatten(json.loads(json.dumps(dict(cfg), default=str)))
    skip = set(ignore)
    return sorted(k for k in set(now) | set(before) if k not in skip and now.get(k) != before.get(k))


# -- hashing and dumping ---------------------------------------------------------------------------------------
def config_hash(cfg: Mapping[str, Any]) -> str:
    """A short, stable hash of a resolved configuration (used to recognise finished runs)."""
    blob = json.dumps(dict(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def dump(cfg: Mapping[str, Any]) -> str:
    """A resolved configuration as YAML, with a header naming the preset and what it changes."""
    text = yaml.safe_dump(dict(cfg), sort_keys=False)
    preset = cfg.get("preset")
    if not preset:
        return text
    changes = flatten(preset_layer(str(cfg["model"]["name"]), str(preset)))
    lines = [f"# preset '{preset}' sets: " + ", ".join(f"{k}={v}" for k, v in changes.items())]
    return "\n".join(lines) + "\n" + text


def describe(cfg: Mapping[str, Any]) -> str:
    """Every effective value of a resolved configuration with its documentation, as a Markdown table; values
    that differ from the model's schema defaults are marked with ``*`` (with the default)."""
    cls = _check_model(str(cfg["model"]["name"]))
    defaults = flatten(dataclasses.asdict(cls()))
    docs = _docs(cls)
    rows = ["| key | value | meaning |", "|---|---|---|"]
    for key, value in flatten(cfg).items():
        mark = "" if defaults.get(key) == value or key == "preset" else f" * (default {defaults.get(key)!r})"
        cells = (key, f"{value!r}{mark}", docs.get(key, ""))
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


def _docs(cls: type, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(_docs(hints[f.name], f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = str(f.metadata.get("doc", ""))
    return out


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'train': {'lr': 1}}`` -> ``{'train.lr': 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
