"""Trainer: run directory files, checkpoints, refusal to overwrite, divergence, early stopping, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import FakeTextTower, small_config

from symcere.cli import main
from symcere.config import config_hash
from symcere.errors import SymcereError
from symcere.models.lightgcn import LightGCN
from symcere.models.symcere import SymCERE
from symcere.training.checkpoint import load_checkpoint
from symcere.training.run import load_run, train
from symcere.training.sampler import InteractionSampler
from symcere.training.seeding import seed_everything
from symcere.training.trainer import Trainer, plateau_warning, rank_term

RUN_FILES = ("config.yaml", "env.json", "log.jsonl", "metrics.json", "checkpoint.pt", "best.pt")


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]


# -------------------------------------------------------------------------------------------- sampler
def test_sampler_covers_every_interaction_and_negatives_are_unseen(tiny_dataset):
    train_m = tiny_dataset.matrix("train")
    sampler = InteractionSampler(train_m, batch_size=50, num_negatives=3)
    batches = list(sampler.epoch(np.random.default_rng(0)))
    assert len(batches) == len(sampler) == int(np.ceil(train_m.nnz / 50))
    users = torch.cat([b["users"] for b in batches]).numpy()
    pos = torch.cat([b["pos"] for b in batches]).numpy()
    neg = torch.cat([b["neg"] for b in batches]).numpy()
    assert neg.shape == (train_m.nnz, 3)
    pairs = sorted(zip(users.tolist(), pos.tolist(), strict=True))
    assert pairs == sorted(zip(*train_m.nonzero(), strict=True))  # each training edge exactly once
    dense = train_m.toarray()
    assert dense[np.repeat(users, 3), neg.reshape(-1)].sum() == 0  # never a training item
    # same generator state, same epoch
    again = list(sampler.epoch(np.random.default_rng(0)))
    assert all(torch.equal(a["neg"], b["neg"]) for a, b in zip(batches, again, strict=True))


# -------------------------------------------------------------------------------------------- run files
def test_run_writes_every_file(tiny_dataset, tmp_path):
    cfg = small_config("lightgcn", "train.max_epochs=3")
    run = tmp_path / "run"
    result = train(tiny_dataset, cfg, run, progress=False)
    assert result.status == "finished" and result.epochs == 3
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    assert yaml.safe_load((run / "config.yaml").read_text()) == cfg
    env = json.loads((run / "env.json").read_text())
    assert env["config_hash"] == config_hash(cfg) and env["seed"] == cfg["seed"] and env["threads"] == 1
    assert Path(env["dataset"]).is_absolute() and Path(env["dataset"]) == tiny_dataset.path.resolve()

    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ck["state"]["epoch"] == 3 and ck["state"]["step"] == result.steps
    assert set(ck) >= {"model", "optimizer", "state", "numpy_rng", "torch_rng"}
    best = torch.load(run / "best.pt", weights_only=True)
    model = LightGCN(tiny_dataset, cfg)
    model.load_state_dict(best["model"])  # the weights fit the model

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "finished"
    for split in ("valid", "test"):
        assert {"ndcg@10", "hr@10", "recall@20"} <= set(metrics[split])
        assert all(0.0 <= v <= 1.0 for v in metrics[split].values())
    assert metrics["valid"] == result.valid and metrics["test"] == result.test

    log = read_log(run)
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert all("valid" in r and np.isfinite(r["loss"]["total"]) for r in log)  # eval_every_steps=1
    assert log[-1]["step"] == result.steps

    # load_run gives back the best model: re-scoring reproduces the recorded validation metric
    loaded, ds, cfg2, m2 = load_run(run)
    assert cfg2 == cfg and m2["status"] == "finished"
    from symcere.evaluation.evaluator import evaluate_split

    with torch.no_grad():
        res = evaluate_split(loaded.score, ds, "valid", ks=(10, 20))
    assert res.metrics["ndcg@10"] == pytest.approx(metrics["valid"]["ndcg@10"], abs=1e-6)


def test_refuses_to_overwrite(tiny_dataset, tmp_path):
    cfg = small_config("mf", "train.max_epochs=1")
    run = tmp_path / "run"
    train(tiny_dataset, cfg, run, progress=False)
    before = (run / "metrics.json").read_bytes()
    with pytest.raises(SymcereError, match="finished run"):
        train(tiny_dataset, cfg, run, progress=False)
    with pytest.raises(SymcereError, match="already ended"):
        train(tiny_dataset, cfg, run, resume=True, progress=False)
    assert (run / "metrics.json").read_bytes() == before

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(SymcereError, match="not empty"):
        train(tiny_dataset, cfg, other, progress=False)
    with pytest.raises(SymcereError, match="no checkpoint.pt"):
        train(tiny_dataset, cfg, other, resume=True, progress=False)
    with pytest.raises(SymcereError, match="no checkpoint.pt"):
        train(tiny_dataset, cfg, tmp_path / "missing", resume=True, progress=False)
    assert (other / "notes.txt").read_text() == "mine"


def test_resume_refuses_another_config(tiny_dataset, tmp_path):
    cfg = small_config("lightgcn", "train.max_epochs=3")
    run = tmp_path / "run"
    seed_everything(0)
    trainer = Trainer(LightGCN(tiny_dataset, cfg), tiny_dataset, cfg, run, progress=False)
    _interrupt_at(trainer, 2)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert not (run / "metrics.json").exists()
    with pytest.raises(SymcereError, match=r"differs .*train\.lr"):
        train(
            tiny_dataset,
            small_config("lightgcn", "train.max_epochs=3", "train.lr=0.5"),
            run,
            resume=True,
            progress=False,
        )
    # a kill can leave a line of a later epoch, or half a line: resume drops both
    with open(run / "log.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"epoch": 2, "step": 6, "loss": {}}\n{"epoch": 3, "st')
    # the thread count does not change what is computed: it may differ on resume
    res = train(
        tiny_dataset,
        small_config("lightgcn", "train.max_epochs=3", "train.threads=2"),
        run,
        resume=True,
        progress=False,
    )
    assert res.status == "finished" and res.epochs == 3
    assert [r["epoch"] for r in read_log(run)] == [1, 2, 3]


def test_bad_metric_is_a_clear_error(tiny_dataset, tmp_path):
    with pytest.raises(SymcereError, match="eval.metric"):
        train(tiny_dataset, small_config("mf", "eval.metric=ndgc@10"), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


# -------------------------------------------------------------------------------------------- divergence
def test_nan_loss_is_recorded_as_diverged(tiny_dataset, tmp_path, monkeypatch):
    real_loss = LightGCN.loss

    def loss(self, batch):
        terms = real_loss(self, batch)
        if self._epoch >= 2:
            terms["bpr"] = terms["bpr"] * float("nan")
            terms["total"] = terms["bpr"] + terms["reg"]
        return terms

    def on_epoch_start(self, epoch):
        self._epoch = epoch

    monkeypatch.setattr(LightGCN, "loss", loss)
    monkeypatch.setattr(LightGCN, "on_epoch_start", on_epoch_start, raising=False)
    run = tmp_path / "run"
    result = train(tiny_dataset, small_config("lightgcn"), run, progress=False)
    assert result.status == "diverged"
    assert "'bpr'" in result.message and "epoch 2" in result.message
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["epochs"] == 1
    assert metrics["valid"] == {} and metrics["test"] == {}
    log = read_log(run)
    assert log[-1]["diverged"] == "bpr" and log[-1]["epoch"] == 2 and np.isnan(log[-1]["value"])
    assert [r["epoch"] for r in log[:-1]] == [1]
    # the last good epoch is still checkpointed
    assert load_checkpoint(run / "checkpoint.pt")["state"]["epoch"] == 1


# -------------------------------------------------------------------------------------------- early stopping
def test_early_stopping_on_steps_restores_best(tiny_dataset, tmp_path):
    # 3 steps per epoch (batch 64, ~180 interactions); a high learning rate overfits quickly
    cfg = small_config(
        "mf",
        "train.max_epochs=200",
        "train.lr=0.05",
        "train.patience_steps=9",
        "train.eval_every_steps=3",
    )
    run = tmp_path / "run"
    result = train(tiny_dataset, cfg, run, progress=False)
    assert result.status == "finished" and result.message == "early stop"
    assert result.epochs < 200
    assert result.steps - result.best_step >= 9 and result.best_step < result.steps
    log = read_log(run)
    best_rec = next(r for r in log if r["epoch"] == result.best_epoch)
    assert best_rec["step"] == result.best_step
    # the best validation value in the log is the one of best_epoch, and it is what the restored model gets
    best_value = max(r["valid"]["ndcg@10"] for r in log if "valid" in r)
    assert best_rec["valid"]["ndcg@10"] == best_value
    assert result.valid["ndcg@10"] == pytest.approx(best_value, abs=1e-9)
    assert log[-1]["valid"]["ndcg@10"] != best_value or log[-1]["epoch"] != result.best_epoch
    assert result.warning == ""  # it peaked early, but its ranking loss fell: overfitting, not a plateau


def test_plateau_warning_names_the_first_and_last_ranking_loss():
    text = plateau_warning(0.6920, 0.6834, 170)  # Musical Instruments, a SymCERE seed stopped at epoch 170
    assert "0.6920" in text and "0.6834" in text and "epoch 170" in text and "train.min_steps" in text
    assert plateau_warning(0.6920, 0.5, 170) == "" and plateau_warning(None, 0.69, 1) == ""
    assert plateau_warning(0.0, 0.0, 1) == ""  # a loss that starts at zero has no plateau to leave
    assert rank_term({"cross": 0.3, "bpr": 0.69, "total": 1.0}) == 0.69 and rank_term({"cross": 0.3}) is None


def test_a_run_stopped_before_its_ranking_loss_moved_is_flagged(tiny_dataset, tmp_path):
    """At a learning rate too small to learn anything, validation never improves on its first value, the
    patience runs out and the result carries the warning (also in metrics.json)."""
    cfg = small_config("mf", "train.max_epochs=50", "train.lr=1e-7", "train.patience_steps=6", "train.eval_every_steps=3")
    result = train(tiny_dataset, cfg, tmp_path / "run", progress=False)
    assert result.message == "early stop" and "train.min_steps" in result.warning
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["warning"] == result.warning
    cfg = small_config("mf", "train.max_epochs=4", "train.lr=1e-7", "train.patience_steps=6", "train.min_steps=1000")
    assert train(tiny_dataset, cfg, tmp_path / "run2", progress=False).warning == ""  # not stopped early


def test_min_steps_and_max_epochs(tiny_dataset, tmp_path):
    cfg = small_config("mf", "train.max_epochs=4", "train.patience_steps=1", "train.min_steps=1000")
    result = train(tiny_dataset, cfg, tmp_path / "run", progress=False)
    assert result.epochs == 4 and result.message == ""  # min_steps prevents the early stop


def test_on_epoch_reports_every_epoch_with_the_best_so_far(tiny_dataset, tmp_path):
    """The experiment runner shows this on its plan-wide bar: one call per epoch, the best valid metric so far."""
    cfg = small_config("mf", "train.max_epochs=3", "train.min_steps=1000")
    seen: list[dict] = []
    result = train(tiny_dataset, cfg, tmp_path / "run", progress=False, on_epoch=seen.append)
    assert [e["epoch"] for e in seen] == [1, 2, 3] and {e["max_epochs"] for e in seen} == {3}
    assert seen[-1]["best"] == pytest.approx(result.valid["ndcg@10"])
    assert [e["step"] for e in seen] == sorted(e["step"] for e in seen) and seen[0]["step"] > 0


def test_evaluation_runs_on_every_core_unless_threads_are_set(tiny_dataset, tmp_path, monkeypatch):
    """A small ID model trains on one thread (its default) but evaluates its dense score block on every core;
    ``train.threads`` fixes both; the training thread count is restored after each evaluation."""
    from symcere.training import trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "cores", lambda: 3)
    seen: list[int] = []
    real = trainer_mod.evaluate_split

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "evaluate_split", spy)
    before = torch.get_num_threads()
    try:
        cfg = small_config("lightgcn", "train.threads=null", "train.max_epochs=2")
        train(tiny_dataset, cfg, tmp_path / "auto", progress=False)
        assert seen and set(seen) == {3} and torch.get_num_threads() == 1  # trained on one thread, evaluated on 3
        seen.clear()
        train(tiny_dataset, small_config("lightgcn", "train.max_epochs=2"), tmp_path / "fixed", progress=False)
        assert seen and set(seen) == {1}  # train.threads=1 holds for evaluation too
    finally:
        torch.set_num_threads(before)


# -------------------------------------------------------------------------------------------- resume
def _interrupt_at(trainer: Trainer, epoch: int) -> None:
    """Make ``trainer`` raise KeyboardInterrupt at the start of ``epoch`` (after epoch-1 was checkpointed)."""
    hook = trainer.model.on_epoch_start

    def on_epoch_start(e):
        if e == epoch:
            raise KeyboardInterrupt
        hook(e)

    trainer.model.on_epoch_start = on_epoch_start


def _symcere_trainer(ds, cfg, run):
    seed_everything(int(cfg["seed"]))
    m = cfg["model"]
    out_dim = m["dim"] * (m["layers"] + 1) if m["backbone"] == "ngcf" else m["dim"]  # the graph encoder's size
    tower = FakeTextTower(ds.n_items, out_dim, seed=0)
    return Trainer(SymCERE(ds, cfg, text_tower=tower), ds, cfg, run, progress=False)


def _sgl_trainer(ds, cfg, run):
    from symcere.models.sgl import SGL

    seed_everything(int(cfg["seed"]))
    return Trainer(SGL(ds, cfg), ds, cfg, run, progress=False)


@pytest.mark.parametrize(
    ("make", "cfg_args"),
    [
        (_symcere_trainer, ("symcere", "train.max_epochs=5", "views.every=epoch")),
        (_symcere_trainer, ("symcere", "train.max_epochs=4", "views.every=step", "model.backbone=ngcf")),
        (_sgl_trainer, ("sgl", "train.max_epochs=4", "views.every=step")),
    ],
    ids=["symcere", "symcere-ngcf-step", "sgl"],
)
def test_in_process_resume_is_exact(tiny_dataset, tmp_path, make, cfg_args):
    """Interrupt after epoch 2, resume with a fresh model: identical log losses and final metrics."""
    cfg = small_config(*cfg_args)
    full = make(tiny_dataset, cfg, tmp_path / "full").fit()
    trainer = make(tiny_dataset, cfg, tmp_path / "cut")
    _interrupt_at(trainer, 3)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert [r["epoch"] for r in read_log(tmp_path / "cut")] == [1, 2]
    resumed = make(tiny_dataset, cfg, tmp_path / "cut").fit(resume=True)
    assert resumed.status == full.status == "finished"
    assert resumed.epochs == full.epochs and resumed.steps == full.steps
    assert resumed.valid == full.valid and resumed.test == full.test
    log_full, log_cut = read_log(tmp_path / "full"), read_log(tmp_path / "cut")
    assert [r["epoch"] for r in log_cut] == list(range(1, full.epochs + 1))
    assert [r["loss"] for r in log_cut] == [r["loss"] for r in log_full]


def _wait_for(predicate, proc, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def test_resume_after_sigkill_matches_uninterrupted_run(tiny_dataset_dir, tmp_path):
    """``symcere train`` killed with SIGKILL mid-run, then ``--resume``: same result as a run never killed."""
    args = [
        "--model",
        "lightgcn",
        "--data",
        str(tiny_dataset_dir),
        "--quiet",
        "--set",
        "model.dim=16",
        "--set",
        "model.layers=2",
        "--set",
        "train.threads=1",
        "--set",
        "train.batch_size=16",
        "--set",
        "train.max_epochs=40",
        "--set",
        "train.eval_every_steps=24",
        "--set",
        "train.patience_steps=100000",
        "--set",
        "train.lr=0.005",
        "--seed",
        "7",
    ]
    cut = tmp_path / "cut"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "symcere.cli", "train", "--out", str(cut), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def ready():
            log = cut / "log.jsonl"
            return (cut / "checkpoint.pt").exists() and log.exists() and len(log.read_text().splitlines()) >= 3

        ok = _wait_for(ready, proc)
        assert ok, f"the run did not reach epoch 3 before ending: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (cut / "metrics.json").exists(), "the run finished before it was killed"
    killed_at = load_checkpoint(cut / "checkpoint.pt")["state"]["epoch"]
    assert 2 <= killed_at < 40

    assert main(["train", "--out", str(cut), "--resume", *args]) == 0
    assert main(["train", "--out", str(tmp_path / "full"), *args]) == 0

    resumed = json.loads((cut / "metrics.json").read_text())
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert resumed["status"] == "finished" and resumed["epochs"] == 40
    epochs = [r["epoch"] for r in read_log(cut)]
    assert epochs == list(range(1, 41))  # starts at 1, continues after the checkpoint, no duplicates
    for key in ("valid", "test", "epochs", "steps", "best_epoch", "best_step"):
        assert resumed[key] == full[key], key
    # the per-epoch losses match too, including the epochs trained before the kill
    assert [r["loss"] for r in read_log(cut)] == [r["loss"] for r in read_log(tmp_path / "full")]


def test_grad_share_logs_each_terms_gradient_without_changing_training(tiny_dataset, tmp_path):
    """train.grad_share=true: per-term gradient norms in the log; the weights trained are bit-identical."""
    from symcere.analysis.curves import training_curves, write_curves
    from symcere.training.trainer import term_grad_norms

    args = ("symcere", "train.max_epochs=3", "loss.alpha=0.5", "train.reg=0.001")
    plain = _symcere_trainer(tiny_dataset, small_config(*args), tmp_path / "plain")
    plain.fit()
    shared = _symcere_trainer(tiny_dataset, small_config(*args, "train.grad_share=true"), tmp_path / "share")
    shared.fit()
    for a, b in zip(plain.model.state_dict().values(), shared.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    log = read_log(tmp_path / "share")
    assert all(set(r["grad_norm"]) == {"rank", "cross", "intra", "reg"} for r in log)
    assert all(v > 0 for r in log for v in r["grad_norm"].values())
    assert "grad_norm" not in read_log(tmp_path / "plain")[0]
    # the norm is the gradient's L2 norm on the graph parameters: check one term against backward()
    model = shared.model
    batch = next(iter(InteractionSampler(tiny_dataset.matrix("train"), 64, 1).epoch(np.random.default_rng(0))))
    terms = model.loss(batch)
    norms = term_grad_norms(terms, shared.graph_params)
    model.zero_grad()
    terms["rank"].backward()
    by_backward = torch.sqrt(sum(p.grad.pow(2).sum() for p in shared.graph_params if p.grad is not None))
    assert norms["rank"] == pytest.approx(float(by_backward), rel=1e-5)
    curves = training_curves(tmp_path / "share")
    assert list(curves["epoch"]) == [1, 2, 3]
    shares = curves[[c for c in curves.columns if c.startswith("share.")]].sum(axis=1)
    assert np.allclose(shares, 1.0)
    paths = write_curves([tmp_path / "plain", tmp_path / "share"], tmp_path / "curves")
    assert [p.name for p in paths] == ["curves.csv", "curves.md", "curves.png"] and all(p.stat().st_size for p in paths)
    assert "mean grad share" in (tmp_path / "curves" / "curves.md").read_text()


def test_curves_bad_input_is_exit_2_naming_file_and_line(tmp_path, capsys):
    assert main(["curves", str(tmp_path), "--out", str(tmp_path / "c")]) == 2
    assert "no log.jsonl" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    good = json.dumps({"epoch": 1, "step": 4, "loss": {"rank": 0.5, "total": 0.5}})
    (run / "log.jsonl").write_text(good + "\n" + '{"epoch": 2, "loss": {"ra')  # killed mid-write: skipped
    from symcere.analysis.curves import training_curves

    assert list(training_curves(run)["epoch"]) == [1]
    for bad, what in [("[1, 2]", "expected a JSON object"), ('{"epoch": 2, "loss": 0.3}', "field 'loss'"),
                      ('{"loss": {"rank": 1.0}}', "field 'epoch'"), ("{oops", "not a JSON record")]:
        (run / "log.jsonl").write_text(good + "\n" + bad + "\n" + good + "\n")
        assert main(["curves", str(run), "--out", str(tmp_path / "c")]) == 2
        err = capsys.readouterr().err
        assert f"log.jsonl, line 2: {what}" in err and "Traceback" not in err, err
    other = tmp_path / "b" / "run"
    other.mkdir(parents=True)
    (run / "log.jsonl").write_text(good + "\n")
    (other / "log.jsonl").write_text(good + "\n")
    assert main(["curves", str(run), str(other), "--out", str(tmp_path / "c")]) == 2
    assert "share the label 'run'" in capsys.readouterr().err
    assert main(["curves", str(run), str(other), "--out", str(tmp_path / "c"), "--labels", "a", "b"]) == 0


def test_grad_share_is_off_with_a_warning_under_several_processes(tiny_dataset, tmp_path, monkeypatch, capsys):
    from symcere.training import distributed

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    trainer = _symcere_trainer(tiny_dataset, small_config("symcere", "train.grad_share=true"), tmp_path / "r")
    assert trainer.grad_share is False
    assert "train.grad_share is off under torchrun" in capsys.readouterr().err
