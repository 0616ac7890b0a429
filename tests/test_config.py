"""Configuration: shipped defaults, presets, files, dotted overrides, validation, hashing."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from symcere.config import (
    available_models,
    available_presets,
    config_hash,
    dump,
    load_config,
    merge,
    parse_override,
)
from symcere.errors import SymcereError


@pytest.mark.parametrize("model", available_models())
def test_defaults_load_for_every_model(model):
    cfg = load_config(model)
    assert cfg["model"]["name"] == model
    # shared keys from base.yaml are present and typed
    assert isinstance(cfg["train"]["lr"], float) and cfg["train"]["lr"] > 0
    assert isinstance(cfg["train"]["batch_size"], int)
    assert isinstance(cfg["model"]["dim"], int)
    assert cfg["eval"]["metric"] == "ndcg@10"
    assert isinstance(cfg["seed"], int)


def test_available_models_and_presets():
    models = available_models()
    assert {"mf", "lightgcn", "ngcf", "neumf", "sgl", "dgclr", "symcere"} <= set(models)
    assert "base" not in models and not any("." in m for m in models)
    assert available_presets("symcere") == ["default", "paper"]
    assert available_presets("lightgcn") == []


def test_unknown_model_names_nearest():
    with pytest.raises(SymcereError, match="unknown model 'lightgnc'.*did you mean 'lightgcn'"):
        load_config("lightgnc")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train.lr=5e-4", {"train": {"lr": 0.0005}}),
        ("train.lr=1E-3", {"train": {"lr": 0.001}}),
        ("train.lr=0.01", {"train": {"lr": 0.01}}),
        ("train.max_epochs=7", {"train": {"max_epochs": 7}}),
        ("eval.ks=[5, 1e1, 20]", {"eval": {"ks": [5, 10.0, 20]}}),
        ("model.normalize=true", {"model": {"normalize": True}}),
        ("model.normalize=False", {"model": {"normalize": False}}),
        ("train.max_minutes=null", {"train": {"max_minutes": None}}),
        ("eval.metric=recall@20", {"eval": {"metric": "recall@20"}}),
        ("seed=3", {"seed": 3}),
    ],
)
def test_parse_override_types(text, expected):
    assert parse_override(text) == expected


def test_overrides_reach_the_config():
    cfg = load_config(
        "lightgcn", overrides=["train.lr=5e-4", "eval.ks=[5,50]", "model.normalize=true", "model.layers=2"]
    )
    assert cfg["train"]["lr"] == 0.0005 and isinstance(cfg["train"]["lr"], float)
    assert cfg["eval"]["ks"] == [5, 50]
    assert cfg["model"]["normalize"] is True and cfg["model"]["layers"] == 2
    # untouched keys keep their defaults
    assert cfg["train"]["batch_size"] == load_config("lightgcn")["train"]["batch_size"]


@pytest.mark.parametrize("bad", ["train.lr", "=3", "..=3"])
def test_malformed_override(bad):
    with pytest.raises(SymcereError, match="override"):
        parse_override(bad)


def test_unknown_key_names_key_and_nearest():
    with pytest.raises(SymcereError) as info:
        load_config("lightgcn", overrides=["train.lrr=0.1"])
    msg = str(info.value)
    assert "'train.lrr'" in msg and "did you mean 'train.lr'" in msg

    with pytest.raises(SymcereError, match=r"'model\.layres'.*did you mean 'model\.layers'"):
        load_config("lightgcn", overrides=["model.layres=2"])
    # a key that exists for another model only
    with pytest.raises(SymcereError, match="unknown config key 'text'"):
        load_config("lightgcn", overrides=["text.max_tokens=32"])


def test_unknown_key_in_file(tmp_path):
    f = tmp_path / "my.yaml"
    f.write_text("train:\n  batch_sise: 128\n")
    with pytest.raises(SymcereError, match=r"'train\.batch_sise'.*did you mean 'train\.batch_size'"):
        load_config("mf", files=[f])


def test_wrong_kinds_are_rejected():
    with pytest.raises(SymcereError, match="train.lr.*number"):
        load_config("mf", overrides=["train.lr=fast"])
    with pytest.raises(SymcereError, match="model.normalize.*true or false"):
        load_config("mf", overrides=["model.normalize=3"])
    with pytest.raises(SymcereError, match="'train' is a section"):
        load_config("mf", overrides=["train=5"])
    with pytest.raises(SymcereError, match="'train.lr' is a single value"):
        load_config("mf", overrides=["train.lr.x=5"])
    with pytest.raises(SymcereError, match="eval.ks.*list"):
        load_config("mf", overrides=["eval.ks=10"])
    # optional keys (null default) accept values, ints are fine where floats are expected
    cfg = load_config("mf", overrides=["train.max_minutes=1.5", "train.lr=1", "train.threads=2"])
    assert cfg["train"]["max_minutes"] == 1.5 and cfg["train"]["lr"] == 1 and cfg["train"]["threads"] == 2


def test_bad_yaml_names_the_line(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("train:\n  lr: 0.1\n  batch_size: [1, 2\nmodel:\n  dim: 8\n")
    with pytest.raises(SymcereError) as info:
        load_config("mf", files=[f])
    msg = str(info.value)
    assert str(f) in msg and "not valid YAML" in msg
    assert "line 4" in msg  # the parser notices the unclosed list on line 4


def test_yaml_that_is_not_a_mapping(tmp_path):
    f = tmp_path / "list.yaml"
    f.write_text("- 1\n- 2\n")
    with pytest.raises(SymcereError, match="mapping of sections"):
        load_config("mf", files=[f])


def test_missing_file():
    with pytest.raises(SymcereError, match="not found"):
        load_config("mf", files=["/nonexistent/cfg.yaml"])


def test_file_exponent_floats_are_numbers(tmp_path):
    f = tmp_path / "cfg.yaml"
    f.write_text("train:\n  lr: 5e-4\n  reg: 0e0\n")
    cfg = load_config("mf", files=[f])
    assert cfg["train"]["lr"] == 0.0005 and cfg["train"]["reg"] == 0.0  # not the strings '5e-4' / '0e0'


def test_layer_order_file_then_override(tmp_path):
    f = tmp_path / "cfg.yaml"
    f.write_text("train:\n  lr: 0.5\n  batch_size: 16\n")
    cfg = load_config("mf", files=[f], overrides=["train.lr=0.25"])
    assert cfg["train"]["lr"] == 0.25 and cfg["train"]["batch_size"] == 16


def test_model_name_cannot_change():
    with pytest.raises(SymcereError, match="model.name"):
        load_config("mf", overrides=["model.name=lightgcn"])


def test_presets_load():
    default = load_config("symcere")
    assert default["preset"] == "default"
    assert load_config("symcere", preset="default") == default
    assert default["text"]["mode"] == "frozen" and default["loss"]["cross"] == "sincere"

    paper = load_config("symcere", preset="paper")
    assert paper["preset"] == "paper"
    # Eq. 13 as written: alpha 0.5, beta 0.05, LoRA text encoder, no L2 regulariser
    assert paper["text"]["mode"] == "lora"
    assert paper["loss"]["alpha"] == 0.5 and paper["loss"]["beta"] == 0.05
    assert paper["train"]["reg"] == 0.0 and paper["model"]["backbone"] == "lightgcn"
    with pytest.raises(SymcereError, match="unknown preset 'fast'.*default, paper"):
        load_config("symcere", preset="fast")


def test_preset_named_in_override_or_file_is_applied(tmp_path):
    via_override = load_config("symcere", overrides=["preset=paper"])
    assert via_override == load_config("symcere", preset="paper")
    f = tmp_path / "p.yaml"
    f.write_text("preset: paper\ntrain:\n  lr: 0.002\n")
    via_file = load_config("symcere", files=[f])
    assert via_file["text"]["mode"] == "lora" and via_file["train"]["lr"] == 0.002
    # the override still wins over the preset's values
    assert load_config("symcere", preset="paper", overrides=["text.mode=frozen"])["text"]["mode"] == "frozen"
    none = load_config("symcere", overrides=["preset=null"])
    assert none["preset"] is None


@dataclasses.dataclass
class _A:
    b: int = 1


@dataclasses.dataclass
class Root:
    a: _A = dataclasses.field(default_factory=_A)


def test_merge_adds_keys_and_validate_refuses_unknown_ones():
    from symcere.config import validate

    base = {"a": {"b": 1}}
    assert merge(base, {"a": {"c": 2}}) == {"a": {"b": 1, "c": 2}}
    with pytest.raises(SymcereError, match="unknown config key 'a.c'"):
        validate(Root, {"a": {"c": 2}})
    with pytest.raises(SymcereError, match="'a.b' expects an integer"):
        validate(Root, {"a": {"b": "x"}})
    assert base == {"a": {"b": 1}}  # inputs are not modified


def test_config_hash_stable():
    a, b = load_config("lightgcn"), load_config("lightgcn")
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 16
    # key order does not matter, values do
    reordered = {k: a[k] for k in reversed(list(a))}
    assert config_hash(reordered) == config_hash(a)
    assert config_hash(load_config("lightgcn", overrides=["train.lr=0.002"])) != config_hash(a)
    # pinned: the hash recognises runs across processes and versions, so it must not change
    assert config_hash({"train": {"lr": 0.001}, "seed": 0}) == "09a06ec0cc27a950"


def test_dump_round_trips(tmp_path):
    cfg = load_config("symcere", overrides=["train.lr=5e-4", "eval.ks=[5, 10]"])
    f = tmp_path / "config.yaml"
    f.write_text(dump(cfg))
    import yaml

    assert yaml.safe_load(f.read_text()) == cfg
    # a dumped config is itself a valid config file for the same model
    assert load_config("symcere", files=[f]) == cfg


def test_runs_of_earlier_versions_migrate_to_todays_keys():
    """A config.yaml written by 0.1.0 (before the typed schema) resolves to today's configuration."""
    from symcere.config import migrate

    old = yaml.safe_load(OLD_LIGHTGCN)
    # loss.ssm_mask was added later: an old run keeps the behaviour it had (copies of the positive kept)
    assert migrate(old) == load_config("lightgcn", overrides={"train.lr": 0.005, "loss.ssm_mask": False})
    old = yaml.safe_load(OLD_SYMCERE)
    # its values are kept (0.1.0's default preset), not replaced by today's defaults
    kept = {"text.bf16": True, "train.lr": 0.005, "train.reg": 1e-4, "loss.cross_weight": 0.01, "loss.cross_tau": 0.1}
    assert migrate(old) == load_config("symcere", overrides=kept)
    # a removed research variant at a non-neutral value is refused with the commit that has it
    old["model"]["score"] = "fused"
    with pytest.raises(SymcereError, match="model.score='fused'.*bd9493f"):
        migrate(old)
    sgl = yaml.safe_load(OLD_LIGHTGCN.replace("name: lightgcn", "name: sgl").replace(
        "  layers: 3", "  layers: 3\n  edge_dropout: 0.2\n  ssl_tau: 0.2\n  ssl_weight: 0.1\n  view_every: step"))
    cfg = migrate(sgl)
    assert cfg["views"] == {"edge_dropout": 0.2, "every": "step"} and cfg["loss"]["ssm_tau"] == 0.1
    assert "ssm_mask" not in migrate(yaml.safe_load(OLD_SYMCERE))["loss"]  # SymCERE has no SSM term


OLD_LIGHTGCN = """seed: 0
model:
  name: lightgcn
  preset: null
  dim: 64
  layers: 3
  normalize: false
train:
  lr: 0.005
  batch_size: 2048
  max_epochs: 1000
  reg: 0.0001
  eval_every_steps: 50
  patience_steps: 600
  min_steps: 0
  max_minutes: null
  threads: null
  num_negatives: 1
eval:
  ks: [10, 20]
  metric: ndcg@10
  max_batch_elements: 16777216
loss:
  rec: bpr
  tau: 0.1
"""

OLD_SYMCERE = """seed: 0
model:
  name: symcere
  preset: default
  dim: 64
  backbone: lightgcn
  layers: 3
  message_dropout: 0.1
  normalize: true
  rank_normalize: false
  align: interaction
  score: graph
  fuse_weight: 0.5
  popularity_prior: 0.0
  text_in_graph: false
train:
  lr: 0.005
  batch_size: 2048
  max_epochs: 1000
  reg: 0.0001
  eval_every_steps: 50
  patience_steps: 600
  min_steps: 0
  max_minutes: null
  threads: null
  num_negatives: 1
eval:
  ks: [10, 20]
  metric: ndcg@10
  max_batch_elements: 16777216
text:
  model: minilm
  pooling: mean
  max_tokens: 128
  item_pooling: review_mean
  shuffle_items: false
  mode: frozen
  lora_r: 8
  lora_alpha: 16
  lora_dropout: 0.05
  lora_targets: null
  mask_strategy: drop
  mask_rate: 0.15
  n_views: 4
  lr: null
  bf16: true
  cache_dir: null
loss:
  cross: sincere
  cross_weight: 0.01
  tau: 0.1
  intra_tau: 0.1
  alpha: 0.0
  intra_graph: interaction
  edge_dropout: 0.1
  view_every: epoch
  rec: bpr
  beta: 1.0
  bpr_reduction: mean
  rec_tau: 0.1
  rec_mask: false
  warmup_epochs: 0
"""
