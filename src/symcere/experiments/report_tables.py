"""Paper tables from the finished runs of a plan's out dir (``out/plan.json`` + ``out/runs/...``).

Written to ``out/tables/``: ``table2.{md,csv,tex}`` (datasets x {HR@10, NDCG@10}, baselines then 'ours',
best bold, second underlined, ``Max. Improv. (%)`` of the best 'ours' over the best baseline, a dagger when
both paired tests over users give p < 0.05), ``table3.*`` (ablations: Full vs each ablation per full model,
each row with its own backbone, with the drop % vs Full and the paired tests over users of Full vs the
ablation on NDCG@10), ``significance.csv``, ``tuning.csv`` and the long ``results.csv``. A cell is the
mean over the finished seeds; a cell with a diverged seed reads ``diverged``, one whose runs all crashed
``failed``, one without runs ``-``. A seed trained with other tuned settings than the study's saved choice
(its model was re-tuned and the seed not yet retrained) is ``stale`` and not counted.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from symcere.config import flatten
from symcere.errors import SymcereError
from symcere.experiments.plan import run_dir_of, safe_name
from symcere.experiments.tuning import own_keys
from symcere.io import write_text
from symcere.tables import Latex, csv_table, latex_table, markdown_table

METRICS = (("HR@10", "hr@10"), ("NDCG@10", "ndcg@10"))
DAGGER = {"md": "†", "tex": r"$^\dagger$"}
_RUN_FIELDS = ("epochs", "best_epoch", "seconds_per_epoch", "train_seconds", "peak_memory_mb")


@dataclass
class Cell:
    """The seeds of one (dataset, model) for one metric."""

    values: list[float] = field(default_factory=list)
    diverged: int = 0
    failed: int = 0
    rank: int = 0  # 1 best, 2 second, 0 otherwise
    dagger: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.values) and not self.diverged

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0 if self.values else math.nan

    def render(self, fmt: str, show_std: bool, digits: int = 4) -> str:
        if self.diverged:
            return "diverged"
        if not self.values:
            return "failed" if self.failed else "-"
        pm = {"md": " ± ", "tex": r" $\pm$ "}[fmt]
        text = f"{self.mean:.{digits}f}" + (f"{pm}{self.std:.{digits}f}" if show_std else "")
        if self.rank == 1:
            text = f"**{text}**" if fmt == "md" else rf"\textbf{{{text}}}"
        elif self.rank == 2:
            text = f"<u>{text}</u>" if fmt == "md" else rf"\underline{{{text}}}"
        return text + (DAGGER[fmt] if self.dagger else "")


def collect(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(plan summary, one record per existing final run dir)``."""
    out = Path(out)
    try:
        plan = json.loads((out / "plan.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SymcereError(
            f"{out} is not a plan output dir (no plan.json); run `symcere experiment PLAN` first"
        ) from None
    records = []
    for ds in plan["datasets"]:
        for label in plan["models"]:
            tuned = _tuned_settings(out, plan, ds, label)
            for seed in _seeds_of(plan, label):
                run_dir = run_dir_of(out, ds, label, seed)
                if run_dir.is_dir():
                    records.append({**_record(run_dir, ds, label, seed, tuned), "run_dir": run_dir.relative_to(out).as_posix()})
    return plan, records


def _tuned_settings(out: Path, plan: dict[str, Any], ds: str, label: str) -> dict[str, Any]:
    """The saved tuned settings the final runs of ``label`` were trained with: its own study's, or for an
    ablation its full model's minus the keys the ablation sets itself (``tuning.own_keys``); ``{}`` if none."""
    spec = plan["models"][label]
    for source in (label, spec.get("ablation_of")):
        path = out / "tuning" / safe_name(ds) / f"{safe_name(str(source))}.json" if source else None
        if path is not None and path.is_file():
            params = dict(json.loads(path.read_text(encoding="utf-8")).get("params") or {})
            if source == label:
                return params
            own = own_keys(spec.get("set"), plan["models"][source].get("set"))
            return {k: v for k, v in params.items() if k not in own}
    return {}


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b, rel_tol=1e-9)
    return a == b


def _stale_keys(run_dir: Path, tuned: dict[str, Any]) -> list[str]:
    """The tuned keys whose value in the run's saved ``config.yaml`` differs from ``tuned``."""
    if not tuned:
        return []
    try:
        saved = flatten(yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {})
    except (OSError, ValueError, yaml.YAMLError, AttributeError):
        return []  # no readable config: the status check below decides
    return [k for k, v in tuned.items() if k in saved and not _same_value(saved[k], v)]


def _record(run_dir: Path, ds: str, label: str, seed: int, tuned: dict[str, Any] | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {"dataset": ds, "model": label, "seed": seed}
    path = run_dir / "metrics.json"
    if path.exists():
        m = json.loads(path.read_text(encoding="utf-8"))
        rec["status"] = m.get("status", "unknown")
        for split in ("test", "valid"):
            rec.update({f"{split} {k}": v for k, v in sorted(m.get(split, {}).items())})
        rec.update({k: m.get(k) for k in _RUN_FIELDS})
        if m.get("warning"):
            rec["warning"] = m["warning"]
        if stale := _stale_keys(run_dir, tuned or {}):
            rec["status"] = "stale"  # trained before its model was re-tuned: not the study's final config
            rec["stale keys"] = " ".join(stale)
    else:
        rec["status"] = "failed" if (run_dir / "error.txt").exists() else "unfinished"
    return rec


def _cells(records: list[dict[str, Any]], ds: str, labels: list[str], key: str) -> dict[str, Cell]:
    cells = {label: Cell() for label in labels}
    for r in records:
        if r["dataset"] == ds and r["model"] in cells:
            if r["status"] == "diverged":
                cells[r["model"]].diverged += 1
            elif r["status"] == "failed":
                cells[r["model"]].failed += 1
            elif r["status"] == "finished" and r.get(f"test {key}") is not None:
                cells[r["model"]].values.append(float(r[f"test {key}"]))
    return cells


def _rank(cells: dict[str, Cell]) -> None:
    means = sorted({round(c.mean, 12) for c in cells.values() if c.ok}, reverse=True)
    for c in cells.values():
        if c.ok:
            c.rank = means.index(round(c.mean, 12)) + 1 if round(c.mean, 12) in means[:2] else 0


def _seeds_of(plan: dict[str, Any], label: str) -> list[int]:
    """A model's seeds as saved in plan.json (``Plan.seeds_of``; plan.json files older than per-model seeds
    have only the plan's)."""
    return list(plan["models"][label].get("seeds") or plan["seeds"])


def _best(cells: dict[str, Cell], labels: list[str]) -> str | None:
    ok = [label for label in labels if cells[label].ok]
    return max(ok, key=lambda label: cells[label].mean) if ok else None


def _per_user(out: Path, ds: str, label: str, seeds: list[int], key: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    found = {}
    for seed in seeds:
        path = run_dir_of(out, ds, label, seed) / "per_user.npz"
        if path.exists():
            with np.load(path) as z:
                if f"test/{key}" in z:
                    found[seed] = (z["test/users"], z[f"test/{key}"])
    return found


def significance(out: Path, ds: str, ours: str, base: str, seeds: list[int], key: str) -> dict[str, Any] | None:
    """Paired tests over users (per-user test metric averaged over the seeds both models finished) of ``ours``
    vs ``base``."""
    from symcere.evaluation.significance import compare_seeds

    a, b = _per_user(out, ds, ours, seeds, key), _per_user(out, ds, base, seeds, key)
    common = sorted(set(a) & set(b))
    a, b = {s: a[s] for s in common}, {s: b[s] for s in common}
    if not a or not b:
        return None
    users = next(iter(a.values()))[0]
    if any(not np.array_equal(u, users) for u, _ in [*a.values(), *b.values()]):
        return None  # different test users: not comparable
    res = compare_seeds([v for _, v in a.values()], [v for _, v in b.values()], level="user")
    t, w = res["ttest"], res["wilcoxon"]
    return {
        "dataset": ds,
        "metric": f"test {key}",
        "ours": ours,
        "baseline": base,
        "mean_diff": t.mean_diff,
        "ttest_p": t.p_value,
        "wilcoxon_p": w.p_value,
        "n_users": t.n,
        "seeds": " ".join(str(x) for x in common),
        "significant": bool(t.mean_diff > 0 and t.p_value < 0.05 and w.p_value < 0.05),
    }


def table2(out: Path, plan: dict[str, Any], records: list[dict[str, Any]], show_std: bool) -> dict[str, Any]:
    """Rows for Markdown / LaTeX / CSV, and the significance rows."""
    models = plan["models"]
    baselines = [m for m in models if models[m]["role"] == "baseline"]
    ours = [m for m in models if models[m]["role"] == "ours"]
    labels = baselines + ours
    improv = "Max. Improv. (%)"
    rows: dict[str, list[dict[str, Any]]] = {"md": [], "tex": [], "csv": []}
    sig_rows = []
    datasets = [d for d in plan["datasets"] if any(r["dataset"] == d for r in records)]
    for ds in datasets:
        for name, key in METRICS:
            cells = _cells(records, ds, labels, key)
            _rank(cells)
            best_o, best_b = _best(cells, ours), _best(cells, baselines)
            gain, sig = None, None
            if best_o and best_b and cells[best_b].mean > 0:
                gain = 100.0 * (cells[best_o].mean / cells[best_b].mean - 1.0)
                seeds = sorted({*_seeds_of(plan, best_o), *_seeds_of(plan, best_b)})
                sig = significance(out, ds, best_o, best_b, seeds, key)
                if sig:
                    sig_rows.append(sig)
            mark = bool(sig and sig["significant"])
            for fmt in ("md", "tex"):
                wrap = Latex if fmt == "tex" else str
                row = {"Dataset": ds, "Metric": name}
                row.update({m: wrap(cells[m].render(fmt, show_std)) for m in labels})
                row[improv] = wrap("-" if gain is None else f"{gain:.2f}" + (DAGGER[fmt] if mark else ""))
                rows[fmt].append(row)
            csv_row: dict[str, Any] = {"dataset": ds, "metric": f"test {key}"}
            for m in labels:
                c = cells[m]
                csv_row.update({f"{m} mean": _num(c.mean), f"{m} std": _num(c.std), f"{m} n": len(c.values)})
                csv_row[f"{m} status"] = "diverged" if c.diverged else ("ok" if c.values else "missing")
            csv_row.update({"best ours": best_o, "best baseline": best_b, "max_improv_pct": gain, "significant": mark})
            rows["csv"].append(csv_row)
    return {"rows": rows, "columns": ["Dataset", "Metric", *labels, improv], "significance": sig_rows}


def metrics_table(out: Path, plan: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every final model of every dataset: validation NDCG@10 and test HR / NDCG / Recall at every K (mean ± std
    over its finished seeds); and paired tests over users of the best 'ours' against the best baseline, both
    picked on VALIDATION NDCG@10 (the selection metric), on each of those test metrics."""
    ks = sorted({int(k.split("@")[1]) for r in records for k in r if k.startswith("test hr@")})
    keys = [f"{m}@{k}" for k in ks for m in ("hr", "ndcg", "recall")]
    rows, sig_rows = [], []
    for ds in [d for d in plan["datasets"] if any(r["dataset"] == d for r in records)]:
        valid: dict[str, Cell] = {}  # the selection metric's cell of every model with finished seeds
        for label, spec in plan["models"].items():
            done = [r for r in records if r["dataset"] == ds and r["model"] == label and r["status"] == "finished"]
            if not done:
                continue
            row: dict[str, Any] = {"dataset": ds, "model": label, "role": spec.get("role") or "ablation",
                                   "seeds": len(done)}
            for key in ["valid ndcg@10", *(f"test {k}" for k in keys)]:
                cell = Cell([float(r[key]) for r in done if r.get(key) is not None])
                if cell.values:
                    row[key] = cell.render("md", show_std=True)
                    if key == "valid ndcg@10":
                        valid[label] = cell
            rows.append(row)
        ours = _best(valid, [m for m in valid if plan["models"][m]["role"] == "ours"])
        base = _best(valid, [m for m in valid if plan["models"][m]["role"] == "baseline"])
        if ours and base:
            seeds = sorted({*_seeds_of(plan, ours), *_seeds_of(plan, base)})
            sig_rows.extend(x for k in keys if (x := significance(out, ds, ours, base, seeds, k)))
    return {"rows": rows, "significance": sig_rows}


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x


P_COLUMN = "NDCG@10 vs Full: t-test p / Wilcoxon p"


def table3(plan: dict[str, Any], records: list[dict[str, Any]], show_std: bool,
           out: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Ablations: for each full model with ablations, Full then each ablation, with the drop % vs Full and, given
    the output dir ``out``, the paired tests over users of Full vs the ablation on NDCG@10 (the seeds both
    finished); a full model none of whose variants has a finished run on a dataset gets no rows there."""
    models = plan["models"]
    fulls = list(dict.fromkeys(m["ablation_of"] for m in models.values() if m.get("ablation_of")))
    rows: dict[str, list[dict[str, Any]]] = {"md": [], "tex": [], "csv": []}
    datasets = [d for d in plan["datasets"] if any(r["dataset"] == d for r in records)]
    for ds in datasets:
        for full in fulls:
            variants = [full] + [m for m, spec in models.items() if spec.get("ablation_of") == full]
            cells = {key: _cells(records, ds, variants, key) for _, key in METRICS}
            if not any(c.ok for by_variant in cells.values() for c in by_variant.values()):
                continue  # nothing of this group ran on this dataset: no block of empty rows
            for v in variants:
                name = "Full" if v == full else models[v]["ablation_name"]
                out_row = {"md": {}, "tex": {}}
                backbone = models[v]["backbone"]  # the row's own: "NGCF backbone" ablations say NGCF
                csv_row: dict[str, Any] = {"dataset": ds, "full": full, "backbone": backbone, "variant": name, "model": v}
                for metric, key in reversed(METRICS):  # NDCG@10 first, as in the paper
                    c, f = cells[key][v], cells[key][full]
                    drop = 100.0 * (1.0 - c.mean / f.mean) if v != full and c.ok and f.ok and f.mean > 0 else None
                    for fmt in ("md", "tex"):
                        wrap = Latex if fmt == "tex" else str
                        out_row[fmt][metric] = wrap(c.render(fmt, show_std))
                        out_row[fmt][f"{metric} drop (%)"] = "" if drop is None else f"{drop:.2f}"
                    csv_row.update({f"{metric} mean": _num(c.mean), f"{metric} std": _num(c.std)})
                    csv_row[f"{metric} drop_pct"] = drop
                sig = significance(out, ds, full, v, _seeds_of(plan, v), "ndcg@10") if out and v != full else None
                for fmt in ("md", "tex"):
                    wrap = Latex if fmt == "tex" else str
                    out_row[fmt][P_COLUMN] = wrap(f"{sig['ttest_p']:.2g} / {sig['wilcoxon_p']:.2g}" if sig else "")
                csv_row.update({"ndcg@10 ttest_p": sig and sig["ttest_p"], "ndcg@10 wilcoxon_p": sig and sig["wilcoxon_p"],
                                "paired seeds": sig and sig["seeds"]})
                for fmt in ("md", "tex"):
                    rows[fmt].append({"Dataset": ds, "Model": full, "Backbone": backbone, "Variant": name, **out_row[fmt]})
                rows["csv"].append(csv_row)
    return rows


def tuning_rows(out: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((Path(out) / "tuning").glob("*/*.json")):
        s = json.loads(path.read_text(encoding="utf-8"))
        finished = sum(1 for h in s.get("history", []) if h.get("status") == "finished")
        searched = sorted({k for h in s.get("history", []) for k in h.get("params", {})})
        row = {"dataset": s["dataset"], "model": s["label"], "trials": s["trials"], "finished": finished}
        row.update({"searched": " ".join(searched), s["metric"]: s["best_value"]})
        rows.append({**row, "chosen": " ".join(s["overrides"]) or "(none finished)"})
    return rows


def write_tables(out: str | Path, *, show_std: bool = False) -> list[Path]:
    """Write every table of ``out`` into ``out/tables``; returns the written files."""
    out = Path(out)
    plan, records = collect(out)
    tables = out / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(name: str, text: str) -> None:
        write_text(tables / name, text if text.endswith("\n") else text + "\n")
        written.append(tables / name)

    metric_cols = sorted({k for r in records for k in r if k.startswith(("test ", "valid "))})
    stale = [r for r in records if r["status"] == "stale"]
    warned = [r for r in records if r.get("warning")]
    cols = ["dataset", "model", "seed", "status", *metric_cols, *_RUN_FIELDS, *(["stale keys"] if stale else []),
            *(["warning"] if warned else []), "run_dir"]
    def names(rows: list[dict[str, Any]]) -> str:
        return ", ".join(f"{r['dataset']}/{r['model']}/seed{r['seed']}" for r in rows)

    if stale:
        print(f"warning: {len(stale)} final run(s) were trained with other tuned settings than the study's saved "
              f"choice and are not counted (retrain them with `symcere experiment`): {names(stale)}", file=sys.stderr)
    if warned:
        print(f"warning: {len(warned)} final run(s) have a warning in results.csv (e.g. stopped early on the "
              f"ranking-loss plateau): {names(warned)}", file=sys.stderr)
    put("results.csv", csv_table(records, cols))
    t2 = table2(out, plan, records, show_std)
    caption2 = f"{plan['name']}: test HR@10 and NDCG@10 (mean over seeds {plan['seeds']})"
    put("table2.md", markdown_table(t2["rows"]["md"], t2["columns"]))
    put("table2.tex", latex_table(t2["rows"]["tex"], t2["columns"], caption=caption2, label="tab:overall"))
    put("table2.csv", csv_table(t2["rows"]["csv"]) if t2["rows"]["csv"] else "")
    sig_cols = [
        *("dataset", "metric", "ours", "baseline", "mean_diff", "ttest_p", "wilcoxon_p", "n_users", "seeds"),
        "significant",
    ]
    put("significance.csv", csv_table(t2["significance"], sig_cols))
    full = metrics_table(out, plan, records)
    if full["rows"]:
        put("metrics.md", markdown_table(full["rows"], list(dict.fromkeys(k for r in full["rows"] for k in r))))
        put("significance_all.md", markdown_table(full["significance"], sig_cols) if full["significance"] else "")
    t3 = table3(plan, records, show_std, out)
    if t3["csv"]:
        put("table3.md", markdown_table(t3["md"]))
        put("table3.tex", latex_table(t3["tex"], caption=f"{plan['name']}: ablations", label="tab:ablation"))
        put("table3.csv", csv_table(t3["csv"]))
    if rows := tuning_rows(out):  # the budget table: trials per model, what each searched, what it chose
        put("tuning.csv", csv_table(rows))
        put("budget.md", markdown_table(rows))
    return written
