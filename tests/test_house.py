"""The house rules that a refactor could silently break: light imports, optional extras, device-clean models,
the device option, the public API's README example."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FakeTextTower, small_config

from symcere.cli import main
from symcere.models import MODELS, build_model
from symcere.training.sampler import InteractionSampler

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("matplotlib", "transformers", "peft", "optuna", "lime", "vaderSentiment")


def test_core_imports_none_of_the_optional_dependencies():
    code = (
        "import sys, symcere, symcere.api, symcere.config, symcere.losses, symcere.evaluation, "
        "symcere.training.trainer, symcere.data, symcere.text\n"
        + "".join(f"import {path.split(':')[0]}\n" for path in MODELS.values())
        + f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_missing_extra_is_named(monkeypatch):
    from symcere.extras import MissingExtra, require

    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    with pytest.raises(MissingExtra, match=r"pip install 'symcere\[tune\]'"):
        require("optuna", "tuning")


def _batch(dataset, model):
    sampler = InteractionSampler(dataset.matrix("train"), 64, model.num_negatives)
    return next(iter(sampler.epoch(np.random.default_rng(0))))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_create_no_tensor_without_the_models_device(tiny_dataset, name):
    """Built on the CPU, trained and scored with the DEFAULT device set to 'meta': a tensor created without
    ``device=`` would land on meta and fail to mix with the model's CPU tensors."""
    overrides = ["model.text_features=random"] if name == "dgclr" else []
    cfg = small_config(name, *overrides)
    if name == "symcere":
        from symcere.models.symcere import SymCERE

        cfg["loss"]["alpha"] = 0.5  # every term of Eq. 13 (views, masked texts), and the user-side term
        cfg["loss"]["user_weight"] = 0.1
        profiles = torch.randn(tiny_dataset.n_users, 12)
        model = SymCERE(tiny_dataset, cfg, text_tower=FakeTextTower(tiny_dataset.n_items, 16), user_text=profiles)
    else:
        model = build_model(tiny_dataset, cfg)
    batch = _batch(tiny_dataset, model)
    with torch.device("meta"):
        model.train()
        model.on_epoch_start(1)
        terms = model.loss(batch)
        terms["total"].backward()
        model.eval()
        scores = model.score(torch.arange(4, device="cpu"))
    assert terms["total"].device.type == "cpu" and scores.device.type == "cpu"
    assert torch.isfinite(scores).all()
    if name == "symcere":
        assert "user" in terms


def test_model_buffers_move_with_the_model(tiny_dataset):
    model = build_model(tiny_dataset, small_config("lightgcn"))
    assert "adj" in dict(model.named_buffers()) and "adj" not in model.state_dict()
    model.to(torch.float64)
    assert model.adj.dtype == torch.float64 and model.device.type == "cpu"


def test_cuda_on_a_machine_without_it_is_a_clear_error(tmp_path, tiny_dataset, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = _train(tiny_dataset, tmp_path / "r", "mf", "train.device=cuda")
    err = capsys.readouterr().err
    assert code == 2 and "train.device=cuda" in err and "no CUDA device" in err and "Traceback" not in err
    assert _train(tiny_dataset, tmp_path / "r2", "mf", "train.device=gpu") == 2


def test_run_records_device_and_evaluation_time(tmp_path, tiny_dataset):
    out = tmp_path / "run"
    assert _train(tiny_dataset, out, "mf", "train.max_epochs=2", "model.dim=8") == 0
    env = json.loads((out / "env.json").read_text())
    assert env["device"] == "cpu"
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all("eval_seconds" in r for r in records if "valid" in r) and all("peak_rss_mb" in r for r in records)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"] == "cpu" and metrics["eval_seconds"] >= 0


def _train(dataset, out, model: str, *settings: str) -> int:
    """``symcere train`` of ``model`` on ``dataset`` into ``out`` (quiet), with ``--set`` for each setting."""
    sets = [arg for setting in settings for arg in ("--set", setting)]
    return main(["train", "--model", model, "--data", str(dataset.path), "--out", str(out), *sets, "--quiet"])


def _readme_api_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_api_example_runs_as_written(tmp_path, monkeypatch):
    """Exactly the README's example (its dataset shrunk by the SYMCERE_EXAMPLE_SMALL switch it documents)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SYMCERE_EXAMPLE_SMALL", "1")
    namespace: dict = {}
    exec(compile(_readme_api_example(), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    table, recs = namespace["table"], namespace["recs"]
    assert list(table["model"]) == ["mf", "lightgcn"] and table["ndcg@10"].between(0, 1).all()
    assert list(recs.columns) == ["user", "item", "rank", "score"] and len(recs) == 2 * 5


def test_a_run_directory_written_by_0_1_0_still_evaluates_and_recommends(tmp_path, tiny_dataset):
    """config.yaml in the keys of 0.1.0 (model.preset, loss.tau): evaluate and recommend read it unchanged."""
    import yaml

    out = tmp_path / "run"
    assert _train(tiny_dataset, out, "lightgcn", "train.max_epochs=2", "model.dim=8") == 0
    recs_now = tmp_path / "now.tsv"
    assert main(["recommend", str(out), "--k", "3", "--out", str(recs_now)]) == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    old = {**cfg, "model": {**cfg["model"], "preset": cfg.pop("preset")}, "loss": {"rec": "bpr", "tau": 0.1}}
    (out / "config.yaml").write_text(yaml.safe_dump(old))
    recs_old = tmp_path / "old.tsv"
    assert main(["recommend", str(out), "--k", "3", "--out", str(recs_old)]) == 0
    assert recs_old.read_text() == recs_now.read_text()
    assert main(["evaluate", str(out), "--split", "test", "--json"]) == 0


def test_a_code_carrying_best_pt_is_refused_with_a_message(tmp_path, tiny_dataset, capsys):
    import pickle

    out = tmp_path / "run"
    assert _train(tiny_dataset, out, "mf", "train.max_epochs=1", "model.dim=8") == 0

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    (out / "best.pt").write_bytes(pickle.dumps({"model": Payload()}))
    capsys.readouterr()
    assert main(["evaluate", str(out), "--split", "test"]) == 2
    captured = capsys.readouterr()
    assert "refused to load" in captured.err and "Traceback" not in captured.err and "pwned" not in captured.out


def test_error_messages_never_echo_terminal_escapes(capsys):
    assert main(["config", "mf", "--set", "train.\x1b[31mlr=1"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b" in err
