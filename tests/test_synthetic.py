"""The built-in synthetic corpus: determinism, sizes, structure, ground truth and the text-signal knob."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from symcere.cli import main
from symcere.data.synthetic import (
    GENERIC_WORDS,
    SLOTS,
    SynthConfig,
    generate_reviews,
    make_synthetic_dataset,
    parse_overrides,
    slot_vocabularies,
)
from symcere.errors import SymcereError

TINY = SynthConfig.tiny()


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


@pytest.fixture(scope="module")
def tiny() -> tuple[list, dict]:
    return generate_reviews(TINY)


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[float, Path]:
    """The tiny dataset written with the default and with zero objective density."""
    root = tmp_path_factory.mktemp("synth")
    return {
        d: make_synthetic_dataset(root / f"d{d}", replace(TINY, objective_density=d), name="tiny")
        for d in (TINY.objective_density, 0.0)
    }


def test_deterministic_per_seed(tiny: tuple[list, dict]) -> None:
    again = generate_reviews(SynthConfig.tiny())
    assert again[0] == tiny[0] and again[1] == tiny[1]
    other, _ = generate_reviews(SynthConfig.tiny(seed=1))
    assert other != tiny[0]
    assert [(r.user, r.item) for r in other] != [(r.user, r.item) for r in tiny[0]]


def test_tiny_sizes_after_5core(tiny_dirs: dict[float, Path]) -> None:
    meta = json.loads((tiny_dirs[TINY.objective_density] / "dataset.json").read_text())
    stats = meta["stats"]
    assert 130 <= stats["users"] <= 170
    assert 175 <= stats["items"] <= 225
    assert 2200 <= stats["interactions"] <= 2800
    assert meta["params"]["k_core"] == 5 and meta["name"] == "tiny"
    assert stats["splits"]["valid"] > 0 and stats["splits"]["test"] > 0


@pytest.mark.slow
def test_default_sizes() -> None:
    reviews, truth = generate_reviews()
    cfg = SynthConfig()
    assert len(reviews) == cfg.n_interactions
    assert len({r.user for r in reviews}) == cfg.n_users
    items = {r.item for r in reviews}
    assert 0.9 * cfg.n_items <= len(items) <= cfg.n_items
    assert len(truth["objective_words"]) >= 80


def test_power_law_popularity(tiny: tuple[list, dict]) -> None:
    counts = np.sort(np.unique([r.item for r in tiny[0]], return_counts=True)[1])[::-1]
    top = counts[: len(counts) // 10].sum() / counts.sum()
    assert top > 0.2  # uniform would be 0.1
    assert counts[0] > 5 * np.median(counts)


def test_ground_truth_recorded(tiny: tuple[list, dict], tiny_dirs: dict[float, Path]) -> None:
    reviews, truth = tiny
    vocab = slot_vocabularies(TINY)
    objective = set(truth["objective_words"])
    assert objective == {w for s in SLOTS for w in vocab[s]}
    assert len(objective) == sum(len(v) for v in vocab.values())  # slot vocabularies are disjoint
    assert not objective & GENERIC_WORDS
    assert all(re.fullmatch(r"[a-z]+", w) for w in objective)
    for words in truth["item_words"].values():
        assert len(words.split()) == len(SLOTS) and set(words.split()) <= objective
    assert set(truth["user_tastes"]) == {r.user for r in reviews}
    taste_words = {w for s in truth["taste_slots"] for w in vocab[s]}
    assert all(set(t.split()) <= taste_words for t in truth["user_tastes"].values())
    assert truth["config"] == TINY.to_dict()

    meta = json.loads((tiny_dirs[TINY.objective_density] / "dataset.json").read_text())
    assert meta["synthetic"]["objective_words"] == truth["objective_words"]
    assert meta["synthetic"]["config"]["objective_density"] == TINY.objective_density
    items = pd.read_parquet(tiny_dirs[TINY.objective_density] / "items.parquet")
    assert set(items["item_id"]) <= set(meta["synthetic"]["item_words"])


def test_many_invented_words_are_distinct() -> None:
    vocab = slot_vocabularies(SynthConfig(n_brands=300, n_categories=40))
    words = [w for s in SLOTS for w in vocab[s]]
    assert len(vocab["brand"]) == 300 and len(vocab["category"]) == 40
    assert len(set(words)) == len(words) and not set(words) & GENERIC_WORDS


def test_zero_objective_density_removes_item_information(tiny_dirs: dict[float, Path]) -> None:
    objective = set(json.loads((tiny_dirs[0.0] / "dataset.json").read_text())["synthetic"]["objective_words"])
    reviews, _ = generate_reviews(replace(TINY, objective_density=0.0))
    assert all(not (_words(r.text) | _words(r.title)) & objective for r in reviews)
    items = pd.read_parquet(tiny_dirs[0.0] / "items.parquet")
    assert all(not _words(t) & objective for t in items["text"])

    # with the default density the training text of most items names the item's category
    meta = json.loads((tiny_dirs[TINY.objective_density] / "dataset.json").read_text())
    items = pd.read_parquet(tiny_dirs[TINY.objective_density] / "items.parquet")
    named = [
        meta["synthetic"]["item_words"][i].split()[0] in _words(t)
        for i, t in zip(items["item_id"], items["text"], strict=True)
    ]
    assert np.mean(named) > 0.8


def test_timestamps_increase_per_user_with_ties(tiny: tuple[list, dict]) -> None:
    reviews, _ = tiny
    per_user: dict[str, list[int]] = defaultdict(list)
    for r in reviews:
        per_user[r.user].append(r.timestamp)
        assert r.timestamp % 86400 == 0  # day precision
    assert [r.timestamp for r in reviews] == sorted(r.timestamp for r in reviews)
    ties = sum(int(np.sum(np.diff(ts) == 0)) for ts in per_user.values())
    assert 0 < ties < 0.2 * len(reviews)


def test_later_interactions_follow_taste_more(tiny: tuple[list, dict]) -> None:
    reviews, truth = tiny
    seq: dict[str, list[bool]] = defaultdict(list)
    for r in reviews:
        category = truth["item_words"][r.item].split()[0]
        seq[r.user].append(category in truth["user_tastes"][r.user].split())
    early = np.mean([m for s in seq.values() for m in s[: len(s) // 2]])
    late = np.mean([m for s in seq.values() for m in s[len(s) // 2 :]])
    assert late > early


def test_nearly_empty_reviews_and_ratings(tiny: tuple[list, dict]) -> None:
    reviews, _ = tiny
    short = sum(len(r.text.split()) <= 2 for r in reviews)
    assert 0 < short < 0.15 * len(reviews)
    assert {r.rating for r in reviews} <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert np.mean([r.rating for r in reviews]) > 3.5
    assert sum(bool(r.title) for r in reviews) > 0.8 * len(reviews)


def _ndcg10(scores: np.ndarray, train: np.ndarray, held: np.ndarray) -> float:
    scores = np.where(train > 0, -np.inf, scores)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    disc = 1.0 / np.log2(np.arange(2, 12))
    dcg = (held[np.arange(len(held))[:, None], top] * disc).sum(1)
    n = held.sum(1).astype(int)
    idcg = np.array([disc[: min(k, 10)].sum() for k in n])
    return float((dcg[n > 0] / idcg[n > 0]).mean())


def _text_and_baselines(d: Path) -> dict[str, float]:
    """NDCG@10 on validation: TF-IDF text-only (mean profile, cosine), most-popular, random."""
    inter = pd.read_parquet(d / "interactions.parquet")
    texts = pd.read_parquet(d / "items.parquet")["text"].tolist()
    n_users, n_items = int(inter["user"].max()) + 1, len(texts)
    mats = {}
    for split in ("train", "valid"):
        part = inter[inter["split"] == split]
        m = np.zeros((n_users, n_items))
        m[part["user"], part["item"]] = 1.0
        mats[split] = m
    vocab: dict[str, int] = {}
    tokens = [re.findall(r"[a-z]+", t.lower()) for t in texts]
    for ts in tokens:
        for w in ts:
            vocab.setdefault(w, len(vocab))
    tf = np.zeros((n_items, max(len(vocab), 1)))
    for i, ts in enumerate(tokens):
        for w in ts:
            tf[i, vocab[w]] += 1
    tf = np.where(tf > 0, 1 + np.log(np.maximum(tf, 1)), 0.0)
    x = tf * (np.log((1 + n_items) / (1 + (tf > 0).sum(0))) + 1)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    train, valid = mats["train"], mats["valid"]
    profile = train @ x / np.maximum(train.sum(1, keepdims=True), 1)
    rng = np.random.default_rng(0)
    return {
        "text": _ndcg10(profile @ x.T, train, valid),
        "pop": _ndcg10(np.tile(train.sum(0), (n_users, 1)), train, valid),
        "random": float(np.mean([_ndcg10(rng.random((n_users, n_items)), train, valid) for _ in range(10)])),
    }


def test_review_text_carries_signal_about_held_out_items(tiny_dirs: dict[float, Path]) -> None:
    rich = _text_and_baselines(tiny_dirs[TINY.objective_density])
    blind = _text_and_baselines(tiny_dirs[0.0])
    assert rich["text"] > 4 * rich["random"]
    assert rich["text"] > 1.3 * rich["pop"]
    assert rich["text"] > 2 * blind["text"]  # the knob controls the signal


@pytest.mark.parametrize(
    "overrides",
    [
        {"new_item_fraction": 1.0, "drift": 1.0},
        {"taste_strength": 0.0, "zipf_exponent": 0.0, "item_seed_interactions": 0, "empty_review_rate": 1.0},
        {"taste_strength": 500.0, "zipf_exponent": 5.0, "tie_rate": 1.0, "mention_noise": 1.0},
    ],
)
def test_extreme_configs_stay_valid(overrides: dict) -> None:
    cfg = SynthConfig.tiny(n_users=40, n_items=60, n_interactions=600, **overrides)
    reviews, truth = generate_reviews(cfg)
    assert 0.8 * cfg.n_interactions <= len(reviews) <= cfg.n_interactions  # heavy users are capped
    pairs = [(r.user, r.item) for r in reviews]
    assert len(set(pairs)) == len(pairs)  # no repeated user-item pair
    assert {r.item for r in reviews} <= set(truth["item_words"])


def test_config_validation_and_overrides() -> None:
    with pytest.raises(SymcereError):
        SynthConfig(objective_density=1.5)
    with pytest.raises(SymcereError):
        SynthConfig(n_interactions=100)
    cfg = parse_overrides(["seed=7", "objective_density=0", "n_users=200"], SynthConfig.tiny())
    assert (cfg.seed, cfg.objective_density, cfg.n_users, cfg.n_items) == (7, 0.0, 200, TINY.n_items)
    for bad in (["nope=1"], ["seed"], ["seed=x"]):
        with pytest.raises(SymcereError):
            parse_overrides(bad)


def test_cli_synth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny-ds"
    argv = ["data", "synth", "--out", str(out), "--preset", "tiny", "--seed", "3", "--set", "drift=0.2"]
    assert main(argv) == 0
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["name"] == "tiny-ds"
    assert meta["synthetic"]["config"]["seed"] == 3 and meta["synthetic"]["config"]["drift"] == 0.2
    assert "wrote" in capsys.readouterr().out
    assert main(argv) == 2  # exists, no --overwrite
    assert capsys.readouterr().err.startswith("symcere: error:")
