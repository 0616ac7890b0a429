"""Fair tuning: one seeded Optuna (TPE) study per (dataset, model label), the same trial budget for every
model with a search space, maximising a VALIDATION metric.

Each trial is a run dir ``out/tuning/DATASET/LABEL/trialN`` trained with ``seed = tuning.seed``; the tuner
reads only :attr:`Outcome.valid` (an ``Outcome`` carries no test metrics) and a trial is never evaluated on
the test split (``metrics.json`` has no test metrics), so test data never steers a choice and is read once,
by the final runs. The seeded sampler replays the same suggestions in a new process, so an interrupted study resumes by
reusing its finished trial dirs. The chosen settings go to ``out/tuning/DATASET/LABEL.json`` and become
``--set`` overrides of the final seeded runs (an ablation without a space of its own inherits its full
model's settings, except for the keys the ablation itself changes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from symcere.config import changed_keys, config_hash, flatten
from symcere.errors import SymcereError
from symcere.experiments.plan import Plan, safe_name
from symcere.extras import require
from symcere.io import write_json


def settings_path(plan: Plan, dataset: str, label: str) -> Path:
    return plan.out / "tuning" / safe_name(dataset) / f"{safe_name(label)}.json"


def _study(plan: Plan, label: str) -> dict[str, Any]:
    """What a study is, besides its base config: space, budget, metric, sampler seed and version."""
    t = plan.tuning
    return {"space": t.spaces[label], "trials": t.trials, "metric": t.metric, "seed": t.seed, "sampler": SAMPLER_VERSION}


def _base_config(plan: Plan, label: str) -> dict[str, Any]:
    return plan.models[label].config(plan.tuning.seed)


def _fingerprint(plan: Plan, label: str) -> str:
    return config_hash({**_study(plan, label), "base": config_hash(_base_config(plan, label))})


#: bumped when the sampler's settings change (saved studies of another version are re-run)
SAMPLER_VERSION = 2


def sampler_seed(seed: int, dataset: str, label: str) -> int:
    """One seed per study: equal budgets, but not the same random start-up draws for every model."""
    return int(config_hash({"seed": seed, "dataset": dataset, "label": label})[:8], 16)


def startup_trials(trials: int) -> int:
    """Random trials before TPE models the space: half the budget, at most Optuna's default of 10 (with fewer
    trials than Optuna's default, TPE would never start and the study would be a random search)."""
    return max(1, min(10, trials // 2))


def _has_space(plan: Plan, label: str) -> bool:
    return plan.tuning is not None and bool(plan.tuning.spaces.get(label))


def _fresh(plan: Plan, dataset: str, label: str) -> dict[str, Any] | None:
    """The saved settings of (dataset, label) if they match the current space, budget and base config."""
    path = settings_path(plan, dataset, label)
    if not path.exists():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    if saved.get("fingerprint") == _fingerprint(plan, label):
        return saved
    # the same study on a base config saved before options were added (their defaults reproduce it)
    base = saved.get("base_config")
    study = json.loads(json.dumps(_study(plan, label)))  # as saved (tuples -> lists)
    if isinstance(base, dict) and saved.get("study") == study:
        try:
            if not changed_keys(base, _base_config(plan, label), source=str(path)):
                return saved
        except SymcereError:
            return None
    return None


def tuned_labels(plan: Plan, labels: list[str]) -> list[str]:
    """Labels whose tuning the final runs of ``labels`` need (own space, or the full model's for ablations)."""
    return list(dict.fromkeys(s for s in (_source(plan, label) for label in labels) if s))


def pending_trials(plan: Plan, dataset: str, label: str) -> int:
    """Trials still to run (or to reuse from trial dirs) before the settings of (dataset, label) are known."""
    if not _has_space(plan, label) or _fresh(plan, dataset, label) is not None:
        return 0
    return plan.tuning.trials


def _source(plan: Plan, label: str) -> str | None:
    """The label whose tuned settings ``label`` uses (itself, its full model, or none)."""
    if _has_space(plan, label):
        return label
    parent = plan.models[label].ablation_of
    return parent if parent and _has_space(plan, parent) else None


def own_keys(ablation_set: dict[str, Any], full_set: dict[str, Any]) -> set[str]:
    """The dotted keys an ablation sets itself (beyond its full model's ``set``): tuned values of these keys
    are not inherited from the full model's study."""
    return set(flatten(ablation_set or {})) - set(flatten(full_set or {}))


def _inherit(plan: Plan, label: str, source: str, overrides: list[str]) -> list[str]:
    if source == label:
        return overrides
    own = own_keys(plan.models[label].set, plan.models[source].set)
    return [o for o in overrides if o.split("=", 1)[0].strip() not in own]


def saved_overrides(plan: Plan, dataset: str, label: str) -> list[str] | None:
    """The tuned overrides of ``label`` if known without tuning (``[]`` when it is not tuned), else None."""
    source = _source(plan, label)
    if source is None:
        return []
    saved = _fresh(plan, dataset, source)
    return None if saved is None else _inherit(plan, label, source, saved["overrides"])


def tuned_overrides(plan: Plan, dataset: str, label: str, data: Any, runner: Any) -> list[str]:
    """The overrides of the final runs of ``label``, tuning first when the settings are not saved yet."""
    source = _source(plan, label)
    if source is None:
        return []
    saved = _fresh(plan, dataset, source) or tune(plan, dataset, source, data, runner)
    return _inherit(plan, label, source, saved["overrides"])


def _suggest(trial: Any, name: str, dist: dict[str, Any]) -> Any:
    kind = dist["type"]
    if kind == "categorical":
        return trial.suggest_categorical(name, dist["choices"])
    if kind == "int":
        return trial.suggest_int(name, dist["low"], dist["high"], step=int(dist.get("step", 1)))
    return trial.suggest_float(name, float(dist["low"]), float(dist["high"]), log=kind == "loguniform")


def tune(plan: Plan, dataset: str, label: str, data: Any, runner: Any) -> dict[str, Any]:
    """Run the study of (dataset, label) through ``runner.run`` and save the chosen settings."""
    optuna = require("optuna", "tuning (experiment plans with a tuning: section)")

    t = plan.tuning
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(
        seed=sampler_seed(t.seed, dataset, label), n_startup_trials=startup_trials(t.trials)
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    spec, history = plan.models[label], []
    trial_root = plan.out / "tuning" / safe_name(dataset) / safe_name(label)
    for i in range(t.trials):
        trial = study.ask()
        params = {name: _suggest(trial, name, dist) for name, dist in t.spaces[label].items()}
        overrides = _overrides(params)
        name = f"tune {dataset}/{label} {i + 1}/{t.trials}"
        outcome = runner.run(name, data, spec.config(t.seed, overrides), trial_root / f"trial{i}", test=False)
        value = outcome.valid.get(t.metric) if outcome.status == "finished" else None
        if value is None and outcome.status == "finished":
            raise SymcereError(
                f"tuning metric {t.metric!r} is not among the validation metrics {sorted(outcome.valid)}"
            )
        if value is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, float(value))
        history.append({"trial": i, "params": params, "status": outcome.status, f"valid {t.metric}": value})
    done = [h for h in history if h[f"valid {t.metric}"] is not None]
    best = max(done, key=lambda h: h[f"valid {t.metric}"]) if done else None
    saved = {
        "dataset": dataset,
        "label": label,
        "metric": f"valid {t.metric}",
        "trials": t.trials,
        "fingerprint": _fingerprint(plan, label),
        "study": _study(plan, label),
        "base_config": _base_config(plan, label),
        "best_trial": best["trial"] if best else None,
        "best_value": best[f"valid {t.metric}"] if best else None,
        "params": best["params"] if best else {},
        "overrides": _overrides(best["params"]) if best else [],
        "history": history,
    }
    if best is None:
        runner.say(f"tuning {dataset}/{label}: no trial finished; the final runs use the plan's settings")
    path = settings_path(plan, dataset, label)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, saved)
    return saved


def _overrides(params: dict[str, Any]) -> list[str]:
    return [f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()]
