"""The ``symcere`` command tree (every ``--help``, no CLI code under ``symcere.data``) and ``symcere train |
evaluate | recommend`` end to end through ``symcere.cli.main``."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import symcere.data
from symcere.cli import build_parser, main
from symcere.data import Dataset

SMALL = [
    "--set",
    "model.dim=16",
    "--set",
    "train.threads=1",
    "--set",
    "train.batch_size=64",
    "--set",
    "train.max_epochs=4",
    "--set",
    "train.eval_every_steps=1",
    "--set",
    "train.lr=0.01",
]


# every sub-command, in pipeline order (the order of `symcere --help`)
COMMANDS = [
    ["prepare"],
    ["data"],
    ["data", "stats"],
    ["data", "synth"],
    ["data", "export-recbole"],
    ["config"],
    ["train"],
    ["evaluate"],
    ["recommend"],
    ["serve"],
    ["export"],
    ["quickstart"],
    ["experiment"],
    ["experiment-tables"],
    ["analyze"],
    ["curves"],
]


def _command_paths(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                paths += [[*prefix, name], *_command_paths(child, [*prefix, name])]
    return paths


def test_command_tree_is_flat_and_complete() -> None:
    assert _command_paths(build_parser(), []) == COMMANDS


@pytest.mark.parametrize("command", [[], *COMMANDS], ids=lambda c: " ".join(c) or "symcere")
def test_every_help_exits_0(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {' '.join(['symcere', *command])}")


def test_help_and_data_imports_stay_light() -> None:
    """In fresh interpreters: building the parser imports no torch; the data modules import no CLI module."""
    checks = [
        "from symcere.cli import build_parser\nbuild_parser().format_help()\nassert 'torch' not in sys.modules",
        "import symcere.data.synthetic, symcere.data.preprocess, symcere.data.readers\n"
        "assert not [m for m in sys.modules if m.startswith('symcere.cli')], 'symcere.data imported the CLI'",
    ]
    for check in checks:
        subprocess.run([sys.executable, "-c", f"import sys\n{check}"], check=True)


def test_data_package_has_no_cli_code() -> None:
    files = sorted(Path(symcere.data.__file__).parent.rglob("*.py"))
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "argparse" not in text and "add_argument" not in text, f"{path} holds CLI code"


@pytest.fixture(scope="module")
def trained(tiny_dataset_dir, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "run"
    args = ["train", "--model", "lightgcn", "--data", str(tiny_dataset_dir), "--out", str(run), "--quiet", *SMALL]
    assert main([*args, "--set", "model.layers=2"]) == 0
    return run


def read_tsv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        return list(reader.fieldnames or []), list(reader)


def test_train_prints_summary_and_writes_run(trained, tiny_dataset_dir, capsys):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["epochs"] == 4
    cfg = yaml.safe_load((trained / "config.yaml").read_text())
    assert cfg["model"]["name"] == "lightgcn" and cfg["model"]["dim"] == 16 and cfg["train"]["max_epochs"] == 4


def test_train_output_and_seed_shortcut(tiny_dataset_dir, tmp_path, capsys):
    run = tmp_path / "r"
    args = ["train", "--model", "mf", "--data", str(tiny_dataset_dir), "--out", str(run), "--quiet", *SMALL]
    assert main([*args, "--seed", "11", "--set", "train.max_epochs=1"]) == 0
    out = capsys.readouterr().out
    assert "| mf | finished |" in out and f"run saved in {run}" in out
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 11
    # a second train into the finished run is refused, exit status 2, message on stderr
    assert main([*args, "--set", "train.max_epochs=1"]) == 2
    assert "already holds a finished run" in capsys.readouterr().err


def test_train_config_errors_exit_2(tiny_dataset_dir, tmp_path, capsys):
    base = ["train", "--model", "lightgcn", "--data", str(tiny_dataset_dir), "--out", str(tmp_path / "r")]
    assert main([*base, "--set", "train.lrr=0.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("symcere: error:") and "'train.lrr'" in err and "train.lr" in err
    assert main([*base, "--preset", "nope"]) == 2
    assert main(["train", "--model", "mf", "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "r")]) == 2
    assert "dataset directory not found" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_train_divergence_exit_3(tiny_dataset_dir, tmp_path, monkeypatch, capsys):
    from symcere.models.mf import MF

    real = MF.loss

    def nan_loss(self, batch):
        terms = real(self, batch)
        terms["bpr"] = terms["bpr"] / 0.0 * 0.0
        return terms

    monkeypatch.setattr(MF, "loss", nan_loss)
    run = tmp_path / "r"
    code = main(["train", "--model", "mf", "--data", str(tiny_dataset_dir), "--out", str(run), "--quiet", *SMALL])
    assert code == 3
    assert "training diverged" in capsys.readouterr().err
    assert json.loads((run / "metrics.json").read_text())["status"] == "diverged"


def test_evaluate_matches_training_metrics(trained, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(trained), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    recorded = json.loads((trained / "metrics.json").read_text())["test"]
    for key in ("hr@10", "ndcg@10", "recall@20", "mrr@20"):
        assert got[key] == pytest.approx(recorded[key], abs=1e-9), key
    assert main(["evaluate", str(trained), "--split", "valid", "--k", "5", "--json"]) == 0
    valid = json.loads(capsys.readouterr().out)
    assert set(valid) == {"hr@5", "ndcg@5", "recall@5", "precision@5", "mrr@5"}
    assert main(["evaluate", str(trained)]) == 0
    assert "| ndcg@10 |" in capsys.readouterr().out


def test_evaluate_with_moved_dataset(trained, tiny_dataset_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    env = json.loads((run / "env.json").read_text())
    env["dataset"] = str(tmp_path / "gone")
    (run / "env.json").write_text(json.dumps(env))
    assert main(["evaluate", str(run), "--json"]) == 2
    assert "pass --data" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--json", "--data", str(tiny_dataset_dir)]) == 0
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2


@pytest.mark.parametrize(
    ("exclude", "splits"), [("train+valid", ("train", "valid")), ("all", ("train", "valid", "test"))]
)
def test_recommend_all_users(trained, tiny_dataset_dir, tmp_path, exclude, splits, capsys):
    ds = Dataset.load(tiny_dataset_dir)
    out = tmp_path / "recs.tsv"
    assert main(["recommend", str(trained), "--k", "5", "--out", str(out), "--exclude-seen", exclude]) == 0
    assert f"top-5 lists for {ds.n_users} users" in capsys.readouterr().out
    header, rows = read_tsv(out)
    assert header == ["user", "item", "rank", "score"]
    assert out.read_text().startswith("user\titem\trank\tscore\n")
    by_user: dict[str, list[dict]] = {}
    for r in rows:
        by_user.setdefault(r["user"], []).append(r)
    assert set(by_user) == set(ds.user_ids)  # original ids, every user
    seen = {(ds.user_ids[u], ds.item_ids[i]) for s in splits for u, i in zip(*ds.split_arrays(s), strict=True)}
    for user, recs in by_user.items():
        assert [int(r["rank"]) for r in recs] == [1, 2, 3, 4, 5]
        assert len({r["item"] for r in recs}) == 5
        assert all(r["item"] in ds.item_ids for r in recs)
        scores = [float(r["score"]) for r in recs]
        assert scores == sorted(scores, reverse=True)
        assert not any((user, r["item"]) in seen for r in recs), "an excluded interaction was recommended"


def test_recommend_train_only_may_repeat_valid_items(trained, tiny_dataset_dir, tmp_path):
    ds = Dataset.load(tiny_dataset_dir)
    out = tmp_path / "recs.tsv"
    assert main(["recommend", str(trained), "--k", "40", "--out", str(out), "--exclude-seen", "train"]) == 0
    _, rows = read_tsv(out)
    train_pairs = {(ds.user_ids[u], ds.item_ids[i]) for u, i in zip(*ds.split_arrays("train"), strict=True)}
    valid_pairs = {(ds.user_ids[u], ds.item_ids[i]) for u, i in zip(*ds.split_arrays("valid"), strict=True)}
    got = {(r["user"], r["item"]) for r in rows}
    assert not got & train_pairs
    assert got & valid_pairs  # with k=40 of 41 items, validation items are among the candidates
    # fewer candidates than k: only the real candidates are written (no -inf rows)
    per_user = {}
    for r in rows:
        per_user[r["user"]] = per_user.get(r["user"], 0) + 1
    for u, n in per_user.items():
        n_train = sum(1 for p in train_pairs if p[0] == u)
        assert n == min(40, ds.n_items - n_train)


def test_recommend_users_file(trained, tiny_dataset_dir, tmp_path, capsys):
    users = tmp_path / "users.txt"
    users.write_text("u003\n\nu017\n")
    out = tmp_path / "recs.tsv"
    assert main(["recommend", str(trained), "--users", str(users), "--k", "3", "--out", str(out)]) == 0
    _, rows = read_tsv(out)
    assert [r["user"] for r in rows] == ["u003"] * 3 + ["u017"] * 3

    bad = tmp_path / "bad.txt"
    bad.write_text("u003\nnobody\nu004\n")
    out2 = tmp_path / "recs2.tsv"
    capsys.readouterr()
    assert main(["recommend", str(trained), "--users", str(bad), "--out", str(out2)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "nobody" in err and "line 2" in err
    assert not out2.exists()

    assert main(["recommend", str(trained), "--users", str(tmp_path / "missing.txt"), "--out", str(out2)]) == 2
    assert "missing.txt" in capsys.readouterr().err


def test_recommend_refuses_to_overwrite(trained, tmp_path, capsys):
    out = tmp_path / "recs.tsv"
    out.write_text("precious\n")
    assert main(["recommend", str(trained), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert out.read_text() == "precious\n"
    assert main(["recommend", str(trained), "--out", str(out), "--force", "--k", "2"]) == 0
    header, rows = read_tsv(out)
    assert header == ["user", "item", "rank", "score"] and len(rows) == 2 * 30
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed into place


def test_config_command_shows_every_value_and_what_a_preset_changes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "symcere", "--preset", "paper"]) == 0
    out = capsys.readouterr().out
    assert "| loss.beta | 0.05 * (default 1.0) |" in out and "| model.dim | 64 |" in out
    assert main(["config", "lightgcn", "--yaml", "--set", "train.lr=0.5"]) == 0
    assert "lr: 0.5" in capsys.readouterr().out
    assert main(["config", "lightgcn", "--set", "train.lrr=1"]) == 2
    assert "did you mean 'train.lr'" in capsys.readouterr().err
