"""Experiment plans: validation, a tiny 2-model x 2-seed plan end to end, resume, tuning, tables."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from symcere.cli import main
from symcere.config import config_hash
from symcere.errors import SymcereError
from symcere.experiments import runner as runner_mod
from symcere.experiments.plan import load_plan
from symcere.experiments.runner import Outcome, run_plan, run_state

FAST = ["train.max_epochs=2", "train.threads=1", "model.dim=8", "train.eval_every_steps=1"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from symcere.data.synthetic import SynthConfig, make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("exp") / "tiny", SynthConfig.tiny())


def _write(tmp_path: Path, plan: dict, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(plan), encoding="utf-8")
    return path


def _plan(data: Path, **extra) -> dict:
    return {
        "name": "t",
        "out": "out",
        "seeds": [0, 1],
        "datasets": {"tiny": {"path": str(data)}},
        "models": {
            "mf": {"role": "baseline", "set": FAST},
            "lightgcn": {"role": "ours", "set": [*FAST, "model.layers=1"]},
        },
        **extra,
    }


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"colour": 1}, "colour"),
        ({"seeds": "zero"}, "seeds"),
        ({"models": {"mf": {"seeds": [1, 1]}}}, "models.mf.seeds"),
        ({"models": {"foo": {}}}, "models.foo.model"),
        ({"models": {"mf": {"role": "hero"}}}, "models.mf.role"),
        ({"models": {"mf": {"set": ["train.lrr=1"]}}}, "models.mf"),
        ({"models": {"x": {"model": "mf", "role": "ablation"}}}, "models.x.ablation_of"),
        ({"models": {"x": {"ablation_of": "nope"}}}, "models.x.ablation_of"),
        ({"datasets": {"d": {"synthetic": {"n_userz": 3}}}}, "datasets.d.synthetic.n_userz"),
        ({"datasets": {"d": {"url": "x"}}}, "datasets.d.url"),
        ({"tuning": {"trials": 0}}, "tuning.trials"),
        ({"tuning": {"spaces": {"zzz": {}}}}, "tuning.spaces.zzz"),
        ({"tuning": {"spaces": {"mf": {"train.lr": {"type": "loguniform", "low": 0, "high": 1}}}}}, "train.lr"),
        ({"tuning": {"spaces": {"mf": {"train.nope": {"choices": [1]}}}}}, "tuning.spaces.mf.train.nope"),
    ],
)
def test_plan_validation_names_file_and_key(tmp_path: Path, change: dict, key: str) -> None:
    plan = {"datasets": {"d": {"path": "x"}}, "models": {"mf": {}}, **change}
    path = _write(tmp_path, plan)
    with pytest.raises(SymcereError) as err:
        load_plan(path)
    assert str(path) in str(err.value) and key in str(err.value)


def test_plan_paths_and_ablation_inheritance(tmp_path: Path) -> None:
    plan = {
        "datasets": {"d": {"path": "data/d", "prepare": {"input": "raw/r.csv"}}},
        "models": {
            "sym": {"model": "symcere", "set": ["model.backbone=ngcf"], "role": "ours"},
            "sym_wo_norm": {"ablation_of": "sym", "ablation_name": "w/o Norm", "set": ["model.normalize=false"]},
        },
    }
    p = load_plan(_write(tmp_path, plan))
    assert p.datasets["d"].path == tmp_path / "data" / "d"
    assert p.datasets["d"].prepare["input"] == [str(tmp_path / "raw" / "r.csv")]
    abl = p.models["sym_wo_norm"]
    assert (abl.model, abl.role, abl.backbone) == ("symcere", "ablation", "NGCF")
    cfg = abl.config(3)
    assert cfg["model"]["backbone"] == "ngcf" and cfg["model"]["normalize"] is False and cfg["seed"] == 3


def test_table3_rows_name_their_full_model_and_their_own_backbone(tmp_path: Path) -> None:
    """An ablation that swaps the graph encoder ("LightGCN backbone" of an NGCF model) is listed under its full
    model with the backbone it trained, not its full model's."""
    from symcere.experiments.report_tables import table3

    plan = {
        "datasets": {"d": {"path": "data/d"}},
        "models": {
            "sym": {"model": "symcere", "set": ["model.backbone=ngcf"], "role": "ours"},
            "sym_wo_norm": {"ablation_of": "sym", "ablation_name": "w/o Norm", "set": ["model.normalize=false"]},
            "sym_lgcn": {"ablation_of": "sym", "ablation_name": "LightGCN backbone", "set": ["model.backbone=lightgcn"]},
        },
    }
    summary = load_plan(_write(tmp_path, plan)).summary()
    assert summary["models"]["sym_lgcn"]["backbone"] == "LightGCN" and summary["models"]["sym"]["backbone"] == "NGCF"
    records = [{"dataset": "d", "model": m, "status": "finished", "test ndcg@10": v, "test hr@10": 2 * v}
               for m, v in (("sym", 0.04), ("sym_wo_norm", 0.03), ("sym_lgcn", 0.05))]
    rows = table3(summary, records, show_std=False)
    got = [(r["model"], r["full"], r["backbone"], r["variant"]) for r in rows["csv"]]
    assert got == [("sym", "sym", "NGCF", "Full"), ("sym_lgcn", "sym", "LightGCN", "LightGCN backbone"),
                   ("sym_wo_norm", "sym", "NGCF", "w/o Norm")]  # in the plan's order (written sorted here)
    assert [r["NDCG@10 drop (%)"] for r in rows["md"]] == ["", "-25.00", "25.00"]
    plan["datasets"]["e"] = {"path": "data/e"}  # a second dataset where only the full model ran
    summary = load_plan(_write(tmp_path, plan)).summary()
    records += [{"dataset": "e", "model": "sym", "status": "finished", "test ndcg@10": 0.02, "test hr@10": 0.04},
                {"dataset": "e", "model": "other", "status": "finished", "test ndcg@10": 0.01, "test hr@10": 0.02}]
    summary["models"]["other"] = {"model": "lightgcn", "backbone": "LightGCN"}
    summary["models"]["other_x"] = {"ablation_of": "other", "ablation_name": "x", "backbone": "LightGCN"}
    summary["models"]["none"] = {"model": "lightgcn", "backbone": "LightGCN"}
    summary["models"]["none_x"] = {"ablation_of": "none", "ablation_name": "x", "backbone": "LightGCN"}
    rows = table3(summary, records, show_std=False)
    blocks = sorted({(r["dataset"], r["full"]) for r in rows["csv"]})
    assert blocks == [("d", "sym"), ("e", "other"), ("e", "sym")]  # "none" ran nowhere, "other" only on e
    assert [r["variant"] for r in rows["csv"] if r["dataset"] == "e" and r["full"] == "sym"] == \
        ["Full", "LightGCN backbone", "w/o Norm"]  # a group that ran keeps its not-run ablations as "-"


def test_table3_pairs_each_ablation_with_its_full_model_over_users(tmp_path: Path) -> None:
    """Given the output dir, Table 3 carries the paired tests over users (NDCG@10, the seeds both finished) of
    Full vs each ablation: the p-values of scipy's paired t-test and Wilcoxon test on the seed-averaged users."""
    from symcere.experiments.plan import run_dir_of
    from symcere.experiments.report_tables import table3

    plan = {"datasets": {"d": {"path": "data/d"}}, "seeds": [0, 1],
            "models": {"sym": {"model": "symcere", "role": "ours"},
                       "sym_x": {"ablation_of": "sym", "ablation_name": "x", "set": ["model.normalize=false"]}}}
    summary = load_plan(_write(tmp_path, plan)).summary()
    rng = np.random.default_rng(0)
    users = np.arange(40)
    full = {0: rng.random(40), 1: rng.random(40)}
    abl = {0: full[0] - 0.1 * rng.random(40)}  # the ablation finished seed 0 only: the pair is seed 0
    for label, seeds in (("sym", full), ("sym_x", abl)):
        for seed, values in seeds.items():
            run = run_dir_of(tmp_path, "d", label, seed)
            run.mkdir(parents=True)
            np.savez(run / "per_user.npz", **{"test/users": users, "test/ndcg@10": values})
    records = [{"dataset": "d", "model": m, "seed": s, "status": "finished", "test ndcg@10": float(v.mean()),
                "test hr@10": 0.1} for m, by_seed in (("sym", full), ("sym_x", abl)) for s, v in by_seed.items()]
    rows = table3(summary, records, show_std=False, out=tmp_path)
    (x,) = [r for r in rows["csv"] if r["model"] == "sym_x"]
    assert x["paired seeds"] == "0"
    assert x["ndcg@10 ttest_p"] == pytest.approx(stats.ttest_rel(full[0], abl[0]).pvalue)
    assert x["ndcg@10 wilcoxon_p"] == pytest.approx(stats.wilcoxon(full[0], abl[0]).pvalue)
    md = {r["Variant"]: r["NDCG@10 vs Full: t-test p / Wilcoxon p"] for r in rows["md"]}
    assert md["Full"] == "" and md["x"] == f"{x['ndcg@10 ttest_p']:.2g} / {x['ndcg@10 wilcoxon_p']:.2g}"
    assert table3(summary, records, show_std=False)["csv"][1]["ndcg@10 ttest_p"] is None  # no out dir: no tests


def test_every_baseline_names_its_graph_encoder(tmp_path: Path) -> None:
    """Table 3's Backbone column names the graph encoder in words, for the baselines too."""
    plan = {
        "datasets": {"d": {"path": "data/d"}},
        "models": {m: {"role": "baseline"} for m in ("mf", "neumf", "sgl", "dgclr", "lightgcn", "ngcf")},
    }
    models = load_plan(_write(tmp_path, plan)).summary()["models"]
    assert {m: models[m]["backbone"] for m in models} == {
        "mf": "none", "neumf": "none", "sgl": "LightGCN", "dgclr": "factorised LightGCN",
        "lightgcn": "LightGCN", "ngcf": "NGCF",
    }


def test_shipped_plans_are_valid() -> None:
    for name in ("quick", "paper", "symcere_study", "study"):
        plan = load_plan(REPO / "experiments" / f"{name}.yaml")
        assert plan.models and plan.datasets


def test_plan_bar_shows_the_running_models_epoch(tmp_path: Path, tiny_data: Path, capsys) -> None:
    """A long run inside a plan is not a silent bar: the plan's bar names the current run's epoch and best."""
    plan = _plan(tiny_data, seeds=[0], models={"mf": {"role": "baseline", "set": FAST}})
    assert main(["experiment", str(_write(tmp_path, plan))]) == 0
    err = capsys.readouterr().err
    assert re.search(r"epoch 1/\d+ step \d+ best \d\.\d{4}", err), err[-2000:]


def test_plan_runs_writes_tables_and_resumes(tmp_path: Path, tiny_data: Path, capsys) -> None:
    path = _write(tmp_path, _plan(tiny_data, datasets={"tiny": {"path": str(tiny_data)}, "gone": {"path": "nope"}}))
    assert main(["experiment", str(path), "--dry-run"]) == 0
    assert "skip: dataset not found" in capsys.readouterr().out
    assert main(["experiment", str(path), "--quiet"]) == 0
    out = tmp_path / "out"
    tables = out / "tables"
    md, tex = (tables / "table2.md").read_text(), (tables / "table2.tex").read_text()
    assert "**" in md and "<u>" in md and "Max. Improv. (%)" in md
    assert r"\textbf{" in tex and r"\underline{" in tex and r"Max. Improv. (\%)" in tex
    with open(tables / "table2.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["metric"] for r in rows} == {"test hr@10", "test ndcg@10"} and "mf std" in rows[0]
    with open(tables / "results.csv") as fh:
        results = list(csv.DictReader(fh))
    assert len(results) == 4 and {r["status"] for r in results} == {"finished"}
    assert {"test ndcg@10", "epochs", "seconds_per_epoch", "peak_memory_mb"} <= set(results[0])
    sig = (tables / "significance.csv").read_text()
    assert "wilcoxon_p" in sig and "lightgcn,mf" in sig
    # every metric of every model, and the paired tests of the best 'ours' vs the best baseline picked on
    # validation NDCG@10, on HR / NDCG / Recall at 10 and 20
    full = (tables / "metrics.md").read_text()
    by_model = {r["model"]: r for r in results}
    for label in ("mf", "lightgcn"):
        values = [float(r["valid ndcg@10"]) for r in results if r["model"] == label]
        assert f"| {label} |" in full and f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}" in full
    assert "test recall@20" in full and set(by_model) == {"mf", "lightgcn"}
    sig_all = (tables / "significance_all.md").read_text()
    assert sum(f"| test {k} |" in sig_all for k in ("hr@10", "ndcg@10", "recall@10", "hr@20", "ndcg@20", "recall@20")) == 6

    plan = load_plan(path)
    assert run_plan(plan, quiet=True)["trained"] == 0  # everything finished: all skipped
    # an interrupted run (checkpoint, no metrics.json) resumes; a changed config retrains and keeps the old dir
    (out / "runs" / "tiny" / "mf" / "seed1" / "metrics.json").unlink()
    plan.models["lightgcn"].set["model"]["layers"] = 2
    summary = run_plan(plan, quiet=True)
    assert (summary["trained"], summary["reused"]) == (3, 1)
    assert len(list((out / "runs" / "tiny" / "lightgcn").glob("seed0.stale-*"))) == 1
    assert main(["experiment-tables", str(out), "--std"]) == 0
    assert "±" in (tables / "table2.md").read_text()


class _NoTest(dict):
    """A metrics dict whose test entries must never be read by the tuner."""

    def __getitem__(self, key):
        if key == "test":
            raise AssertionError("test metrics read during tuning")
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key == "test":
            raise AssertionError("test metrics read during tuning")
        return super().get(key, default)


class _Guard:
    """A RunResult whose ``test`` attribute must never be read by the tuner."""

    def __init__(self, result):
        self._result = result

    def __getattr__(self, name):
        if name == "test":
            raise AssertionError("test metrics read during tuning")
        return getattr(self._result, name)


def test_tuning_uses_validation_only_and_resumes(tmp_path: Path, tiny_data: Path, monkeypatch) -> None:
    assert "test" not in Outcome.__dataclass_fields__  # the tuner gets no test metrics at all
    real_train, real_read = runner_mod.train, runner_mod._read_json

    def train(*args, **kwargs):
        return _Guard(real_train(*args, **kwargs))  # test metrics poisoned after metrics.json is written

    monkeypatch.setattr(runner_mod, "train", train)
    monkeypatch.setattr(runner_mod, "_read_json", lambda p: _NoTest(real_read(p)))
    space = {"train.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-2}}
    plan_dict = _plan(tiny_data, seeds=[0], tuning={"trials": 2, "metric": "ndcg@10", "spaces": {"mf": space}})
    plan = load_plan(_write(tmp_path, plan_dict))
    assert run_plan(plan, quiet=True)["trained"] == 4  # 2 trials + mf + lightgcn
    saved = json.loads((tmp_path / "out" / "tuning" / "tiny" / "mf.json").read_text())
    assert saved["trials"] == 2 and len(saved["history"]) == 2 and saved["metric"] == "valid ndcg@10"
    assert saved["overrides"] == [f"train.lr={saved['params']['train.lr']!r}"]
    for trial in sorted((tmp_path / "out" / "tuning" / "tiny" / "mf").glob("trial*")):  # never evaluated on test
        assert json.loads((trial / "metrics.json").read_text())["test"] == {}
        with np.load(trial / "per_user.npz") as z:
            assert any(k.startswith("valid/") for k in z) and not any(k.startswith("test/") for k in z)
    assert json.loads((tmp_path / "out" / "runs" / "tiny" / "mf" / "seed0" / "metrics.json").read_text())["test"]
    cfg = json.loads((tmp_path / "out" / "runs" / "tiny" / "mf" / "seed0" / "env.json").read_text())
    assert cfg["config_hash"] == config_hash(plan.models["mf"].config(0, saved["overrides"]))
    # resume: the seeded sampler replays the same trials, which are reused from their run dirs
    (tmp_path / "out" / "tuning" / "tiny" / "mf.json").unlink()
    assert run_plan(plan, quiet=True)["trained"] == 0
    assert json.loads((tmp_path / "out" / "tuning" / "tiny" / "mf.json").read_text())["params"] == saved["params"]
    assert {"tuning.csv", "budget.md"} <= {p.name for p in (tmp_path / "out" / "tables").iterdir()}
    budget = (tmp_path / "out" / "tables" / "budget.md").read_text()
    assert "| tiny | mf | 2 | 2 | train.lr |" in budget  # trials, finished, what was searched


def test_saved_study_from_before_an_option_existed_is_read_not_replayed(tmp_path: Path, tiny_data: Path) -> None:
    """A study saved before an option was added (its base config lacks the key, so its fingerprint differs)
    is still this study when the key's default reproduces it; another base value or budget is not."""
    from symcere.experiments import tuning

    space = {"train.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-2}}
    plan = load_plan(_write(tmp_path, _plan(tiny_data, seeds=[0], tuning={"trials": 1, "spaces": {"mf": space}})))
    run_plan(plan, quiet=True)
    path = tuning.settings_path(plan, "tiny", "mf")
    saved = json.loads(path.read_text())
    assert saved["base_config"]["train"]["lr"] == plan.models["mf"].config(0)["train"]["lr"]
    del saved["base_config"]["train"]["grad_share"]  # as saved before train.grad_share existed
    path.write_text(json.dumps({**saved, "fingerprint": "of-an-older-version"}))
    assert tuning._fresh(plan, "tiny", "mf")["params"] == saved["params"]
    assert run_plan(plan, quiet=True)["trained"] == 0
    saved["base_config"]["train"]["reg"] = 0.5  # another base config: tuned again
    path.write_text(json.dumps({**saved, "fingerprint": "of-an-older-version"}))
    assert tuning._fresh(plan, "tiny", "mf") is None
    saved["base_config"]["train"]["reg"] = plan.models["mf"].config(0)["train"]["reg"]
    path.write_text(json.dumps({**saved, "fingerprint": "x", "study": {**saved["study"], "trials": 5}}))
    assert tuning._fresh(plan, "tiny", "mf") is None


def test_tables_do_not_count_a_seed_trained_before_its_model_was_retuned(
    tmp_path: Path, tiny_data: Path, capsys
) -> None:
    """Mid-way through retraining a re-tuned model, a seed still holds the old choice: the tables mark it
    stale (with the keys that differ) and average only the seeds trained with the saved settings."""
    from symcere.experiments.report_tables import write_tables

    space = {"train.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-2}}
    plan_dict = _plan(tiny_data, tuning={"trials": 1, "metric": "ndcg@10", "spaces": {"mf": space}})
    plan_dict["models"]["mf_l2"] = {"ablation_of": "mf", "ablation_name": "more L2", "set": ["train.reg=0.01"],
                                    "seeds": [0]}
    run_plan(load_plan(_write(tmp_path, plan_dict)), quiet=True)
    out = tmp_path / "out"
    rows = {(r["model"], r["seed"]): r for r in csv.DictReader((out / "tables" / "results.csv").open())}
    assert {r["status"] for r in rows.values()} == {"finished"}
    seed1 = out / "runs" / "tiny" / "mf" / "seed1" / "config.yaml"
    saved = yaml.safe_load(seed1.read_text())
    saved["train"]["lr"] = float(saved["train"]["lr"]) / 3  # as trained before the re-tuning changed the lr
    seed1.write_text(yaml.safe_dump(saved))
    capsys.readouterr()
    write_tables(out)
    assert "1 final run(s) were trained with other tuned settings" in capsys.readouterr().err
    after = {(r["model"], r["seed"]): r for r in csv.DictReader((out / "tables" / "results.csv").open())}
    assert (after["mf", "1"]["status"], after["mf", "1"]["stale keys"]) == ("stale", "train.lr")
    assert after["mf", "0"]["status"] == after["mf_l2", "0"]["status"] == "finished"  # the ablation inherits lr
    cell = next(r for r in csv.DictReader((out / "tables" / "table2.csv").open()) if r["metric"] == "test ndcg@10")
    assert (cell["mf n"], float(cell["mf mean"])) == ("1", float(rows["mf", "0"]["test ndcg@10"]))
    # --tables-only follows the plan as written now: a renamed ablation is renamed in Table 3, nothing retrains
    plan_dict["models"]["mf_l2"]["ablation_name"] = "L2 x 10"
    main(["experiment", str(_write(tmp_path, plan_dict)), "--tables-only", "--quiet"])
    assert "| L2 x 10 |" in (out / "tables" / "table3.md").read_text()
    assert "more L2" not in (out / "tables" / "table3.md").read_text()


def test_every_study_has_its_own_sampler_seed_and_tpe_starts_within_the_budget() -> None:
    from symcere.experiments.tuning import sampler_seed, startup_trials

    seeds = {sampler_seed(0, ds, label) for ds in ("a", "b") for label in ("mf", "lightgcn", "symcere")}
    assert len(seeds) == 6 and sampler_seed(0, "a", "mf") == sampler_seed(0, "a", "mf")
    assert [startup_trials(n) for n in (1, 3, 6, 20, 50)] == [1, 1, 3, 10, 10]


def test_diverged_run_is_a_cell_not_a_crash(tmp_path: Path, tiny_data: Path) -> None:
    plan = _plan(tiny_data, seeds=[0])
    plan["models"]["mf"]["set"] = [*FAST, "train.lr=1.0e30", "train.batch_size=256"]
    summary = run_plan(load_plan(_write(tmp_path, plan)), quiet=True)
    assert summary["failed"] == []
    tables = tmp_path / "out" / "tables"
    assert "| diverged |" in (tables / "table2.md").read_text()
    assert "diverged" in (tables / "table2.tex").read_text()
    assert "diverged" in (tables / "results.csv").read_text()
    run_dir = tmp_path / "out" / "runs" / "tiny" / "mf" / "seed0"
    assert run_state(run_dir, load_plan(tmp_path / "plan.yaml").models["mf"].config(0)) == "done"


def test_run_saved_before_an_option_existed_is_still_finished(tmp_path: Path, tiny_data: Path) -> None:
    """A finished run whose config.yaml predates a key (here train.grad_share, logging only) is reused when the
    key's default reproduces it; a changed value makes it stale."""
    plan = _plan(tiny_data, seeds=[0])
    run_plan(load_plan(_write(tmp_path, plan)), quiet=True)
    cfg = load_plan(tmp_path / "plan.yaml").models["mf"].config(0)
    run_dir = tmp_path / "out" / "runs" / "tiny" / "mf" / "seed0"
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    del saved["train"]["grad_share"]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    env = json.loads((run_dir / "env.json").read_text())
    (run_dir / "env.json").write_text(json.dumps({**env, "config_hash": "hash-of-an-older-version"}))
    assert run_state(run_dir, cfg) == "done"
    saved["train"]["lr"] = float(saved["train"]["lr"]) * 2
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    assert run_state(run_dir, cfg) == "stale"


def test_latex_table_escapes_plain_cells_only() -> None:
    from symcere.tables import Latex, latex_table

    tex = latex_table([{"model": "sym_wo_norm", "x": Latex(r"\textbf{0.5}"), "gain": "5%"}], caption="a & b")
    assert r"sym\_wo\_norm & \textbf{0.5} & 5\%" in tex and r"\caption{a \& b}" in tex and r"\toprule" in tex


def test_a_model_with_its_own_seeds(tmp_path: Path, tiny_data: Path) -> None:
    plan = _plan(tiny_data)
    plan["models"]["mf"]["seeds"] = [1]
    path = _write(tmp_path, plan)
    loaded = load_plan(path)
    assert loaded.seeds_of("mf") == [1] and loaded.seeds_of("lightgcn") == [0, 1]
    run_plan(loaded, quiet=True)
    runs = tmp_path / "out" / "runs" / "tiny"
    assert sorted(p.name for p in (runs / "mf").iterdir()) == ["seed1"]
    assert sorted(p.name for p in (runs / "lightgcn").iterdir()) == ["seed0", "seed1"]
    with open(tmp_path / "out" / "tables" / "results.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted((r["model"], r["seed"]) for r in rows) == [("lightgcn", "0"), ("lightgcn", "1"), ("mf", "1")]
    with open(tmp_path / "out" / "tables" / "significance.csv", encoding="utf-8") as fh:
        sig = list(csv.DictReader(fh))
    assert sig and all(r["seeds"] == "1" for r in sig)  # paired on the one seed both models have


def test_archive_rebuilds_the_tables_and_resumes_the_study_elsewhere(tmp_path: Path, tiny_data: Path) -> None:
    """The archive (no checkpoints) writes the same tables, and copied into a new output dir, trains nothing."""
    space = {"train.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-2}}
    plan_dict = _plan(tiny_data, seeds=[0, 1], tuning={"trials": 2, "metric": "ndcg@10", "spaces": {"mf": space}})
    path = _write(tmp_path, plan_dict)
    assert main(["experiment", str(path), "--quiet"]) == 0
    out, dest = tmp_path / "out", tmp_path / "archive"
    assert main(["experiment-tables", str(out), "--archive", str(dest)]) == 0
    assert not list(dest.glob("**/*.pt")) and len(list(dest.glob("runs/*/*/seed*/per_user.npz"))) == 4
    assert len(list(dest.glob("tuning/tiny/mf/trial*/metrics.json"))) == 2
    marker = json.loads((dest / "ARCHIVE.json").read_text())
    assert marker == {"source": "out", "files": len(list(dest.glob("**/*.*"))) - 1, "runs": 6}
    seed0 = json.loads((out / "runs/tiny/mf/seed0/metrics.json").read_text())
    assert seed0["run_dir"] == str((out / "runs/tiny/mf/seed0").resolve())  # the working record names the machine
    kept = json.loads((dest / "runs/tiny/mf/seed0/metrics.json").read_text())
    assert kept == {**seed0, "run_dir": "runs/tiny/mf/seed0"}  # the archived one only paths inside the output dir
    env = json.loads((dest / "runs/tiny/mf/seed0/env.json").read_text())
    assert env["dataset"] == str(tiny_data)  # the user's own data outside the output dir: named as the plan names it
    assert not [p for p in dest.glob("**/*") if p.is_file() and str(out.resolve()) in p.read_bytes().decode("latin-1")]
    before = {n: (out / "tables" / n).read_text() for n in ("table2.md", "significance.csv", "budget.md")}
    assert main(["experiment-tables", str(dest)]) == 0
    before["results.csv"] = (out / "tables" / "results.csv").read_text()
    for name, text in before.items():  # results.csv names each run's folder relative to its output dir
        assert (dest / "tables" / name).read_text() == text, name
    moved = tmp_path / "moved"
    shutil.copytree(dest, moved)
    plan = load_plan(path, out=moved)
    assert run_plan(plan, quiet=True)["trained"] == 0  # every trial and seed counts as finished
    assert main(["experiment-tables", str(out), "--archive", str(dest)]) == 0  # an earlier archive is refreshed
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["experiment-tables", str(out), "--archive", str(tmp_path / "mine")]) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep" and len(list((tmp_path / "mine").iterdir())) == 1
    assert main(["experiment-tables", str(out), "--archive", str(out / "inside")]) == 2


def test_the_committed_study_archive_is_not_git_ignored() -> None:
    """docs/study/records/runs/ holds the archived seed runs that paired tests need: no ignore rule may drop them."""
    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    probe = ["docs/study/records/runs/ds/model/seed0/per_user.npz", "docs/study/records/tuning/ds/model/trial0/metrics.json"]
    done = subprocess.run(["git", "check-ignore", "--no-index", *probe], cwd=root, capture_output=True, text=True)
    assert done.returncode == 1, f"git ignores {done.stdout.split()}"  # 1: none of the paths is ignored
    done = subprocess.run(["git", "check-ignore", "--no-index", "runs/study/plan.json"], cwd=root, capture_output=True)
    assert done.returncode == 0  # while the working output dir stays out of git


def test_results_csv_carries_a_run_s_plateau_warning(tmp_path: Path, tiny_data: Path, capsys) -> None:
    """A final run that stopped before its ranking loss moved is named on stderr and flagged in results.csv."""
    plan_dict = _plan(tiny_data, seeds=[0])
    stuck = ["train.lr=1e-7", "train.patience_steps=6", "train.eval_every_steps=3", "train.max_epochs=50"]
    plan_dict["models"]["mf"]["set"] = [*FAST, *stuck]
    assert main(["experiment", str(_write(tmp_path, plan_dict)), "--quiet"]) == 0
    assert "1 final run(s) have a warning" in capsys.readouterr().err
    with open(tmp_path / "out" / "tables" / "results.csv", encoding="utf-8") as fh:
        rows = {r["model"]: r for r in csv.DictReader(fh)}
    assert "train.min_steps" in rows["mf"]["warning"] and rows["lightgcn"]["warning"] == ""
