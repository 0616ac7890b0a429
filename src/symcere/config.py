"""Configuration: shipped YAML defaults, user YAML files and dotted ``--set`` overrides, validated.

A configuration is a nested dict. Its schema is the merge of ``configs/base.yaml`` (shared by every model)
and ``configs/<model>.yaml`` (the model's own keys and defaults). A user file or override may only set keys
that exist in that schema: an unknown key is an error naming the key and the nearest valid one. Presets
(``configs/<model>.<preset>.yaml``) are files in the same schema applied on top of the model defaults.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from symcere.errors import SymcereError

Config = dict[str, Any]


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads exponent floats without a dot (``5e-4``, ``1E3``) as floats.

    Plain PyYAML keeps ``5e-4`` a STRING, so ``lr: 5e-4`` in a user file would reach the code as text."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _read_yaml(path: Path | Any, what: str) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SymcereError(f"{what} not found: {path}") from exc
    try:
        data = _load_yaml(text) or {}
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
    files = resources.files("symcere").joinpath("configs").iterdir()
    names = [p.name[: -len(".yaml")] for p in files if p.name.endswith(".yaml")]
    return sorted(n for n in names if n != "base" and "." not in n)


def available_presets(model: str) -> list[str]:
    prefix = f"{model}."
    files = resources.files("symcere").joinpath("configs").iterdir()
    names = (
        p.name[len(prefix) : -len(".yaml")] for p in files if p.name.startswith(prefix) and p.name.endswith(".yaml")
    )
    return sorted(n for n in names if n)  # 'symcere.yaml' itself is the model file, not a preset


def merge(base: Mapping[str, Any], update: Mapping[str, Any], *, strict: bool = True, where: str = "") -> Config:
    """Return ``base`` updated by ``update`` (recursively). With ``strict`` every key must exist in base."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        dotted = f"{where}.{key}" if where else str(key)
        if strict and key not in out:
            raise SymcereError(_unknown_key_message(dotted, base, where))
        if strict:
            _check_type(dotted, out[key], value)
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value, strict=strict, where=dotted)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _check_type(dotted: str, old: Any, new: Any) -> None:
    """A strict update keeps a key's kind: sections stay sections, numbers numbers, booleans booleans, lists
    lists. Keys whose default is null (optional settings) or a string accept any value."""
    if old is None:
        return
    if isinstance(old, Mapping) and not isinstance(new, Mapping):
        raise SymcereError(f"config key '{dotted}' is a section: set its keys ({dotted}.KEY=VALUE), got {new!r}")
    if isinstance(new, Mapping) and not isinstance(old, Mapping):
        raise SymcereError(f"config key '{dotted}' is a single value, not a section; got {new!r}")
    if isinstance(old, bool):
        if not isinstance(new, bool):
            raise SymcereError(f"config key '{dotted}' expects true or false, got {new!r}")
    elif isinstance(old, int | float):
        if isinstance(new, bool) or not isinstance(new, int | float):
            raise SymcereError(f"config key '{dotted}' expects a number, got {new!r}")
    elif isinstance(old, list):
        if not isinstance(new, list):
            raise SymcereError(f"config key '{dotted}' expects a list (e.g. [10, 20]), got {new!r}")


def _unknown_key_message(dotted: str, section: Mapping[str, Any], where: str) -> str:
    options = [f"{where}.{k}" if where else str(k) for k in section]
    near = difflib.get_close_matches(dotted, options, n=1, cutoff=0.5)
    hint = f"; did you mean '{near[0]}'?" if near else f"; valid keys here: {', '.join(sorted(options))}"
    return f"unknown config key '{dotted}'{hint}"


def parse_override(text: str) -> Config:
    """``'train.lr=5e-4'`` -> ``{'train': {'lr': 0.0005}}`` (the value is parsed as YAML)."""
    if "=" not in text:
        raise SymcereError(f"override '{text}' must look like section.key=value (e.g. train.lr=5e-4)")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise SymcereError(f"override '{text}' has an empty key")
    try:
        value = _load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise SymcereError(f"override '{text}': value is not valid YAML ({exc})") from exc
    node: Config = {}
    cur = node
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return node


def load_config(
    model: str,
    *,
    preset: str | None = None,
    files: Iterable[str | Path] = (),
    overrides: Iterable[str] = (),
) -> Config:
    """Resolve a model's configuration: base -> model defaults -> preset -> user files -> overrides."""
    if model not in available_models():
        near = difflib.get_close_matches(model, available_models(), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise SymcereError(f"unknown model '{model}'{hint} (available: {', '.join(available_models())})")
    cfg = merge(
        _read_yaml(_shipped("base.yaml"), "config"),
        _read_yaml(_shipped(f"{model}.yaml"), "config"),
        strict=False,
    )
    cfg["model"]["name"] = model
    layers = [_read_yaml(Path(f), "config file") for f in files] + [parse_override(o) for o in overrides]
    if preset is None:
        # the preset named last by a file or an override (null = none), else the model's default
        preset = cfg["model"].get("preset")
        for layer in layers:
            section = layer.get("model")
            if isinstance(section, Mapping) and "preset" in section:
                preset = section["preset"]
    if preset:
        if preset not in available_presets(model):
            raise SymcereError(
                f"unknown preset '{preset}' for model '{model}' (available: {', '.join(available_presets(model))})"
            )
        cfg = merge(cfg, _read_yaml(_shipped(f"{model}.{preset}.yaml"), "preset"))
    for layer in layers:
        cfg = merge(cfg, layer)
    cfg["model"]["preset"] = preset or None  # the preset actually applied
    if cfg["model"]["name"] != model:
        raise SymcereError(f"config sets model.name={cfg['model']['name']!r} but the model is {model!r}")
    return cfg


# Keys added after version 0.1.0 runs were recorded, with the value that reproduces the behaviour from before the
# key existed. ``config_hash`` leaves them out while they hold that value, so adding an option never makes
# finished runs (and tuning results) look stale. Append here whenever a new key is added to a shipped YAML.
NEUTRAL_ADDED_KEYS: dict[tuple[str, str], Any] = {
    ("text", "item_pooling"): "concat",
    ("text", "shuffle_items"): False,
}


def config_hash(cfg: Mapping[str, Any]) -> str:
    """A short, stable hash of a resolved configuration (used to recognise finished runs).

    Keys of ``NEUTRAL_ADDED_KEYS`` at their neutral value are left out (see there)."""
    cfg = copy.deepcopy(dict(cfg))
    for (section, key), neutral in NEUTRAL_ADDED_KEYS.items():
        node = cfg.get(section)
        if isinstance(node, dict) and key in node and node[key] == neutral:
            del node[key]
    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def dump(cfg: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(cfg), sort_keys=False)
