"""Experiment plans: the YAML a user writes (datasets x models x seeds, tuning), validated into a :class:`Plan`.

Format (every key but ``datasets`` and ``models`` is optional)::

    name: study                  # out defaults to runs/<name> (relative to the current directory)
    out: runs/study              # relative to the plan file's folder
    seeds: [0, 1, 2]
    datasets:
      synth: {synthetic: {preset: tiny, seed: 0}}        # generated into out/datasets/synth when missing
      music: {path: data/musical_instruments,             # a prepared dataset dir (relative to the plan)
              prepare: {input: [raw/reviews.csv.zip], format: auto}}  # else built into out/datasets/music
    models:
      lightgcn: {role: baseline}                          # model defaults to the label
      symcere: {preset: default, set: [train.lr=0.005], role: ours}
      symcere_wo_norm: {ablation_of: symcere, ablation_name: w/o Norm, set: [model.normalize=false],
                        seeds: [0, 1]}            # a model's own seeds (default: the plan's)
    tuning: {trials: 10, metric: ndcg@10, seed: 0,
             spaces: {lightgcn: {train.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}}}}

An ablation (``ablation_of`` set; role defaults to ``ablation``) starts from its full model's model, preset
and ``set`` and appends its own ``set``. A dataset whose files are missing is skipped with a warning.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from symcere.config import Config, as_layer, available_models, load_config, merge
from symcere.errors import SymcereError

ROLES = ("baseline", "ours", "ablation")
PARAM_TYPES = ("loguniform", "uniform", "int", "categorical")
_TOP_KEYS = {"name", "out", "seeds", "datasets", "models", "tuning", "description"}
_DATASET_KEYS = {"path", "synthetic", "prepare"}
_PREPARE_KEYS = {"input", "format", "columns", "k_core", "user_k", "item_k", "ratios", "text_budget"}
_MODEL_KEYS = {"model", "preset", "set", "role", "ablation_of", "ablation_name", "backbone", "seeds"}
_TUNING_KEYS = {"trials", "metric", "seed", "spaces"}
_PARAM_KEYS = {"type", "low", "high", "choices", "step"}


def safe_name(text: str) -> str:
    """A label as a directory name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "_"


@dataclass
class DatasetSpec:
    name: str
    path: Path | None = None  # an existing prepared dataset dir
    synthetic: dict[str, Any] | None = None  # SynthConfig fields (+ preset: default | tiny)
    prepare: dict[str, Any] | None = None  # read_reviews / build_dataset arguments; input paths resolved


@dataclass
class ModelSpec:
    label: str
    model: str
    preset: str | None = None
    set: Config = field(default_factory=dict)  # settings layer (nested mapping), validated against the schema
    role: str = "baseline"
    ablation_of: str | None = None
    ablation_name: str | None = None
    backbone: str | None = None
    seeds: list[int] | None = None  # None = the plan's seeds

    def config(self, seed: int, extra: Any = ()) -> Config:
        """The resolved config of this model for ``seed`` (``extra`` settings, e.g. tuned ones, go last)."""
        layer = merge(merge(self.set, as_layer(extra)), {"seed": int(seed)})
        return load_config(self.model, preset=self.preset, overrides=layer)

    def meta(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in ("model", "preset", "set", "role", "ablation_of", "ablation_name", "backbone", "seeds")
        }


@dataclass
class Tuning:
    trials: int = 10
    metric: str = "ndcg@10"
    seed: int = 0
    spaces: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Plan:
    name: str
    file: Path
    out: Path
    seeds: list[int]
    datasets: dict[str, DatasetSpec]
    models: dict[str, ModelSpec]
    tuning: Tuning | None = None

    def seeds_of(self, label: str) -> list[int]:
        """The seeds ``label`` runs with: its own ``seeds`` if given, else the plan's."""
        own = self.models[label].seeds
        return list(own) if own is not None else list(self.seeds)

    def summary(self) -> dict[str, Any]:
        """What the table writers need (saved as out/plan.json)."""
        return {
            "name": self.name,
            "plan_file": str(self.file),
            "seeds": self.seeds,
            "datasets": list(self.datasets),
            "models": {label: {**m.meta(), "seeds": self.seeds_of(label)} for label, m in self.models.items()},
            "tuning": None if self.tuning is None else {"trials": self.tuning.trials, "metric": self.tuning.metric},
        }


class _Checker:
    """Raises SymcereError messages that name the plan file and the dotted key."""

    def __init__(self, file: Path):
        self.file = file

    def fail(self, key: str, msg: str) -> None:
        raise SymcereError(f"plan {self.file}: {key}: {msg}")

    def mapping(self, value: Any, key: str, allowed: set[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping, got {type(value).__name__}")
        if allowed is not None:
            for k in value:
                if k not in allowed:
                    self.fail(f"{key}.{k}" if key else str(k), f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def str_list(self, value: Any, key: str) -> list[str]:
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, "must be a list of strings")
        return list(value)


def _dataset(c: _Checker, name: str, raw: Any, base: Path) -> DatasetSpec:
    key = f"datasets.{name}"
    raw = c.mapping(raw, key, _DATASET_KEYS)
    if not raw:
        c.fail(key, "needs 'path', 'synthetic' or 'prepare'")
    if "synthetic" in raw and len(raw) > 1:
        c.fail(key, "'synthetic' cannot be combined with 'path' or 'prepare'")
    spec = DatasetSpec(name)
    if "path" in raw:
        if not isinstance(raw["path"], str):
            c.fail(f"{key}.path", "must be a directory path")
        spec.path = (base / raw["path"]).resolve()
    if "synthetic" in raw:

        synth = dict(c.mapping(raw["synthetic"] or {}, f"{key}.synthetic"))
        if synth.get("preset", "default") not in ("default", "tiny"):
            c.fail(f"{key}.synthetic.preset", "must be 'default' or 'tiny'")
        try:
            synth_config(synth, f"{key}.synthetic")
        except (SymcereError, TypeError, ValueError) as exc:
            c.fail(f"{key}.synthetic", str(exc))
        spec.synthetic = synth
    if "prepare" in raw:
        prep = dict(c.mapping(raw["prepare"], f"{key}.prepare", _PREPARE_KEYS))
        if "input" not in prep:
            c.fail(f"{key}.prepare.input", "missing (one raw file or a list of them)")
        prep["input"] = [str((base / p).resolve()) for p in c.str_list(prep["input"], f"{key}.prepare.input")]
        spec.prepare = prep
    return spec


def synth_config(entry: dict[str, Any], where: str = ""):
    """A ``synthetic:`` plan entry -> SynthConfig, checked by the one config validator (``preset`` and
    ``k_core`` are not SynthConfig fields)."""
    from dataclasses import asdict

    from symcere.config import build, validate
    from symcere.data.synthetic import SynthConfig

    kw = {k: v for k, v in entry.items() if k not in ("preset", "k_core")}
    validate(SynthConfig, kw, where)
    base = SynthConfig.tiny() if entry.get("preset") == "tiny" else SynthConfig()
    return build(SynthConfig, [asdict(base), kw])


def _model(c: _Checker, label: str, raw: Any, full: ModelSpec | None) -> ModelSpec:
    """One ``models:`` entry; ``full`` is the already-built model an ablation derives from."""
    key = f"models.{label}"
    parent = raw.get("ablation_of")
    model = raw.get("model", full.model if full else label)
    if model not in available_models():
        c.fail(f"{key}.model", f"unknown model '{model}' (available: {', '.join(available_models())})")
    role = raw.get("role", "ablation" if parent else "baseline")
    if role not in ROLES:
        c.fail(f"{key}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
    if (role == "ablation") != (parent is not None):
        c.fail(f"{key}.ablation_of", "an ablation (role: ablation) needs ablation_of, and only an ablation has one")
    try:
        own_set = as_layer(raw.get("set"))
    except SymcereError as exc:
        c.fail(f"{key}.set", f"{exc} (a mapping such as {{train.lr: 0.005}} or a list of key=value strings)")
    spec = ModelSpec(
        label=label,
        model=model,
        preset=raw.get("preset", full.preset if full else None),
        set=merge(full.set, own_set) if full else own_set,
        role=role,
        ablation_of=parent,
        ablation_name=str(raw.get("ablation_name", label)) if parent else None,
        backbone=raw.get("backbone"),
        seeds=_seeds(c, raw["seeds"], f"{key}.seeds") if "seeds" in raw else None,
    )
    try:
        cfg = spec.config(0)
    except SymcereError as exc:
        c.fail(key, str(exc))
    if spec.backbone is None:  # its own graph encoder: an ablation may change the backbone (Table 3)
        name = str(cfg["model"].get("backbone") or model)
        same = full is not None and str(full.config(0)["model"].get("backbone") or full.model) == name
        spec.backbone = full.backbone if same else _BACKBONES.get(name, name)
    return spec


def _seeds(c: _Checker, seeds: Any, key: str) -> list[int]:
    seeds = [seeds] if isinstance(seeds, int) and not isinstance(seeds, bool) else seeds
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        c.fail(key, f"must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        c.fail(key, "has duplicates")
    return seeds


def _models(c: _Checker, raw: Any) -> dict[str, ModelSpec]:
    """Full models first, then ablations (which derive from them); the plan's order is kept."""
    raw = {str(k): c.mapping(v or {}, f"models.{k}", _MODEL_KEYS) for k, v in c.mapping(raw, "models").items()}
    built: dict[str, ModelSpec] = {}
    for label, m in raw.items():
        if m.get("ablation_of") is None:
            built[label] = _model(c, label, m, None)
    for label, m in raw.items():
        parent = m.get("ablation_of")
        if parent is not None:
            if parent not in built:
                why = "is itself an ablation" if parent in raw else "is not a model of the plan"
                c.fail(f"models.{label}.ablation_of", f"'{parent}' {why}")
            built[label] = _model(c, label, m, built[parent])
    return {label: built[label] for label in raw}


# Table 3's Backbone column: the graph encoder each model trains ("none" for the ID-only factorisation models).
_BACKBONES = {
    "lightgcn": "LightGCN",
    "ngcf": "NGCF",
    "sgl": "LightGCN",
    "dgclr": "factorised LightGCN",
    "mf": "none",
    "neumf": "none",
}


def _tuning(c: _Checker, raw: Any, models: dict[str, ModelSpec]) -> Tuning:
    raw = c.mapping(raw, "tuning", _TUNING_KEYS)
    t = Tuning(
        trials=raw.get("trials", 10),
        metric=str(raw.get("metric", "ndcg@10")),
        seed=raw.get("seed", 0),
    )
    if not isinstance(t.trials, int) or t.trials < 1:
        c.fail("tuning.trials", f"must be a positive integer, got {t.trials!r}")
    if not isinstance(t.seed, int):
        c.fail("tuning.seed", "must be an integer")
    if "@" not in t.metric:
        c.fail("tuning.metric", f"expected a validation metric like ndcg@10, got {t.metric!r}")
    for label, space in c.mapping(raw.get("spaces") or {}, "tuning.spaces").items():
        if label not in models:
            c.fail(f"tuning.spaces.{label}", "not a model label of the plan")
        space = c.mapping(space, f"tuning.spaces.{label}")
        for param, dist in space.items():
            _check_param(c, f"tuning.spaces.{label}.{param}", dist)
            sample = dist["choices"][0] if "choices" in dist else dist["low"]
            try:
                models[label].config(0, [f"{param}={sample}"])
            except SymcereError as exc:
                c.fail(f"tuning.spaces.{label}.{param}", str(exc))
        t.spaces[label] = space
    return t


def _check_param(c: _Checker, key: str, dist: Any) -> None:
    dist = c.mapping(dist, key, _PARAM_KEYS)
    kind = dist.setdefault("type", "categorical" if "choices" in dist else None)
    if kind not in PARAM_TYPES:
        c.fail(f"{key}.type", f"must be one of {', '.join(PARAM_TYPES)} (or give choices), got {kind!r}")
    if kind == "categorical":
        if not isinstance(dist.get("choices"), list) or not dist["choices"]:
            c.fail(f"{key}.choices", "must be a non-empty list")
        return
    for bound in ("low", "high"):
        if not isinstance(dist.get(bound), int | float) or isinstance(dist.get(bound), bool):
            c.fail(f"{key}.{bound}", "must be a number")
    if kind == "int" and not (isinstance(dist["low"], int) and isinstance(dist["high"], int)):
        c.fail(key, "type int needs integer low and high")
    if not dist["low"] < dist["high"] or (kind == "loguniform" and dist["low"] <= 0):
        c.fail(key, f"needs 0 < low < high for loguniform and low < high otherwise, got {dist['low']}, {dist['high']}")


def load_plan(path: str | Path, out: str | Path | None = None) -> Plan:
    """Read and validate a plan file; ``out`` overrides the plan's ``out``."""
    file = Path(path).resolve()
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SymcereError(f"plan file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise SymcereError(f"plan {file}: not valid YAML ({exc})") from None
    c = _Checker(file)
    raw = c.mapping(raw, "", _TOP_KEYS)
    name = str(raw.get("name") or file.stem)
    seeds = _seeds(c, raw.get("seeds", [0]), "seeds")
    for key in ("datasets", "models"):
        if not raw.get(key):
            c.fail(key, "missing or empty")
    base = file.parent
    datasets = {str(n): _dataset(c, str(n), d, base) for n, d in c.mapping(raw["datasets"], "datasets").items()}
    models = _models(c, raw["models"])
    for what, names in (("datasets", datasets), ("models", models)):
        dirs = [safe_name(n) for n in names]
        if len(set(dirs)) != len(dirs):
            c.fail(what, "two names map to the same directory name; rename one")
    tuning = _tuning(c, raw["tuning"], models) if raw.get("tuning") else None
    if out is not None:
        out_dir = Path(out).resolve()
    elif raw.get("out"):
        out_dir = (base / str(raw["out"])).resolve()
    else:
        out_dir = (Path("runs") / safe_name(name)).resolve()
    return Plan(name, file, out_dir, seeds, datasets, models, tuning)


STALE = ".stale-"  # a run dir trained with another config is moved aside to ``seedN.stale-HASH`` (the runner)


def run_dir_of(out: Path, dataset: str, label: str, seed: int) -> Path:
    """Where the final run of (dataset, label, seed) lives."""
    return out / "runs" / safe_name(dataset) / safe_name(label) / f"seed{seed}"


def dataset_status(spec: DatasetSpec, out: Path) -> tuple[str, Path | None]:
    """``(status, dir)``: ready (dir has dataset.json), generate, prepare, or missing (to skip)."""
    if spec.path is not None and (spec.path / "dataset.json").is_file():
        return "ready", spec.path
    built = out / "datasets" / safe_name(spec.name)
    if (built / "dataset.json").is_file():
        return "ready", built
    if spec.synthetic is not None:
        return "generate", built
    if spec.prepare is not None:
        missing = [p for p in spec.prepare["input"] if not Path(p).exists()]
        return ("missing", None) if missing else ("prepare", built)
    return "missing", None


def ensure_dataset(spec: DatasetSpec, out: Path) -> Path | None:
    """The dataset dir of ``spec``, generating / preparing it when needed; ``None`` (with a warning) if absent."""
    status, path = dataset_status(spec, out)
    if status == "ready":
        return path
    if status == "generate":
        from symcere.data.synthetic import make_synthetic_dataset

        return make_synthetic_dataset(
            path, synth_config(spec.synthetic), name=spec.name, k_core=int(spec.synthetic.get("k_core", 5))
        )
    if status == "prepare":
        from symcere.data import build_dataset, read_reviews
        from symcere.data.readers import parse_columns

        p = spec.prepare
        records = read_reviews(p["input"], p.get("format", "auto"), parse_columns(p.get("columns")))
        kwargs = {k: p[k] for k in ("k_core", "user_k", "item_k", "ratios", "text_budget") if k in p}
        meta = {"source": {"inputs": [Path(x).name for x in p["input"]], "format": p.get("format", "auto")}}
        return build_dataset(records, path, name=spec.name, extra_meta=meta, **kwargs)
    where = [str(spec.path)] if spec.path else []
    where += spec.prepare["input"] if spec.prepare else []
    warnings.warn(f"dataset '{spec.name}' skipped: not found ({', '.join(where)})", stacklevel=2)
    return None
