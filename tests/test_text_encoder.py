"""The text package (symcere.text): packaged MiniLM offline, pooling, modes, word masking, cache, TextTower."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from symcere.config import load_config
from symcere.errors import SymcereError
from symcere.schema import TextOptions
from symcere.text import (
    FrozenTextCache,
    TextEncoder,
    TextTower,
    mask_words,
    resolve_model_path,
    split_reviews,
)
from symcere.text import cache as cache_mod
from symcere.text.encoder import default_lora_targets

TEXTS = [
    "Great strings, they stayed in tune for weeks and sound bright.",
    "The cable crackles after a month.",
    "This pedal adds a warm overdrive without killing the low end at all.",
    "Cheap tuner but it works.",
]


def _opts(**kw: object) -> TextOptions:
    """Text options as the tests need them: concat item pooling unless asked otherwise."""
    return TextOptions(**{"item_pooling": "concat", **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module", autouse=True)
def _offline(tmp_path_factory: pytest.TempPathFactory) -> object:
    """No network; the default cache folder is a temporary one (nothing is written to ~/.cache)."""
    old = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "SYMCERE_CACHE")}
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["SYMCERE_CACHE"] = str(tmp_path_factory.mktemp("symcere-cache"))
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def frozen() -> TextEncoder:
    return TextEncoder(_opts(mode="frozen", max_tokens=16, batch_size=2))


@pytest.fixture(scope="module")
def lora() -> TextEncoder:
    torch.manual_seed(0)
    return TextEncoder(_opts(mode="lora", max_tokens=16, lora_dropout=0.0))


def test_packaged_minilm_offline_shape_and_determinism(frozen: TextEncoder) -> None:
    assert os.path.isdir(resolve_model_path("minilm"))
    assert frozen.hidden_size == 384
    a = frozen.encode(TEXTS)
    b = frozen.encode(TEXTS, batch_size=3)
    assert a.shape == (4, 384) and a.dtype == torch.float32
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    torch.testing.assert_close(frozen(TEXTS), a, atol=1e-5, rtol=0)
    assert frozen.encode([]).shape == (0, 384)


def test_mean_pooling_ignores_padding(frozen: TextEncoder) -> None:
    short = "Cheap tuner."
    alone = frozen([short])
    batched = frozen([short, "A much longer review text that needs many more tokens than the short one."])
    torch.testing.assert_close(batched[0:1], alone, atol=1e-5, rtol=0)


def test_cls_and_last_pooling() -> None:
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    last = SimpleNamespace(opts=_opts(pooling="last"))
    cls = SimpleNamespace(opts=_opts(pooling="cls"))
    torch.testing.assert_close(TextEncoder.pool(last, hidden, right), hidden[[0, 1], [1, 3]])
    torch.testing.assert_close(TextEncoder.pool(last, hidden, left), hidden[[0, 1], [3, 3]])
    torch.testing.assert_close(TextEncoder.pool(cls, hidden, right), hidden[:, 0])


def test_frozen_has_no_trainable_parameters(frozen: TextEncoder) -> None:
    assert frozen.trainable_parameters() == []
    assert not any(p.requires_grad for p in frozen.parameters())
    frozen.train()
    assert not frozen.backbone.training  # frozen backbone never runs dropout
    frozen.eval()


def test_lora_only_adapters_train_and_step_changes_them(lora: TextEncoder) -> None:
    named = dict(lora.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert any(".query." in n for n in trainable) and any(".value." in n for n in trainable)
    assert len(lora.trainable_parameters()) == len(trainable)

    before = {n: named[n].detach().clone() for n in named}
    lora.train()
    opt = torch.optim.SGD(lora.trainable_parameters(), lr=0.5)
    out = lora(TEXTS[:2])
    assert out.shape == (2, 384) and out.requires_grad
    out.pow(2).sum().backward()
    opt.step()
    lora.eval()
    changed = {n for n in named if not torch.equal(before[n], named[n].detach())}
    assert changed and changed <= trainable
    assert any("lora_B" in n for n in changed)


def test_unknown_model_raises_clear_error() -> None:
    with pytest.raises(SymcereError, match="not available locally") as info:
        TextEncoder(_opts(model="no-such-org/no-such-model-xyz"))
    assert "no-such-org/no-such-model-xyz" in str(info.value)
    assert "directory" in str(info.value)


def test_default_lora_targets() -> None:
    assert default_lora_targets(["encoder.layer.0.attention.self.query", "x.self.value", "x.key"]) == [
        "query",
        "value",
    ]
    assert default_lora_targets(["h.0.attn.c_attn", "h.0.attn.c_proj"]) == ["c_attn"]
    assert default_lora_targets(["layers.0.self_attn.q_proj", "layers.0.self_attn.v_proj"]) == [
        "q_proj",
        "v_proj",
    ]
    with pytest.raises(SymcereError, match="lora_targets"):
        default_lora_targets(["foo.bar"])


def test_mask_words_rate_and_determinism() -> None:
    text = " ".join(f"w{i}" for i in range(4000))
    dropped = mask_words(text, 0.15, np.random.default_rng(0), "drop")
    assert abs(1 - len(dropped.split()) / 4000 - 0.15) < 0.02
    masked = mask_words(text, 0.15, np.random.default_rng(0), "token", "[MASK]")
    words = masked.split()
    assert len(words) == 4000 and abs(words.count("[MASK]") / 4000 - 0.15) < 0.02
    # same seed -> same masked positions for both strategies; different seed -> different result
    assert dropped.split() == [w for w in words if w != "[MASK]"]
    assert mask_words(text, 0.15, np.random.default_rng(0)) == dropped
    assert mask_words(text, 0.15, np.random.default_rng(1)) != dropped
    assert mask_words("a b c", 0.0, np.random.default_rng(0)) == "a b c"
    assert len(mask_words("a b c", 1.0, np.random.default_rng(0), "drop").split()) == 1
    assert mask_words("a b", 1.0, np.random.default_rng(0), "token", "<unk>") == "<unk> <unk>"
    assert mask_words("", 0.5, np.random.default_rng(0)) == ""


def _count_encode(monkeypatch: pytest.MonkeyPatch, enc: TextEncoder) -> list[int]:
    calls: list[int] = []
    original = enc.encode

    def counting(texts, batch_size=None, progress=False):  # type: ignore[no-untyped-def]
        calls.append(len(texts))
        return original(texts, batch_size=batch_size, progress=progress)

    monkeypatch.setattr(enc, "encode", counting)
    return calls


def test_cache_round_trip(frozen: TextEncoder, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_encode(monkeypatch, frozen)
    first = FrozenTextCache(TEXTS, n_views=3, seed=7, cache_dir=tmp_path, encoder=frozen, progress=False)
    assert calls and not first.loaded_from_disk
    assert first.base.shape == (4, 384) and first.views.shape == (4, 3, 384)
    torch.testing.assert_close(first.get([2, 0]), frozen.encode([TEXTS[2], TEXTS[0]]), atol=1e-5, rtol=0)
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    stored = torch.load(files[0], weights_only=True)
    torch.testing.assert_close(stored["views"], first.views)

    # second construction: loaded from disk, no encoding, and no model is even built
    calls.clear()
    monkeypatch.setattr(cache_mod, "TextEncoder", lambda *a, **k: pytest.fail("model built on cache hit"))
    second = FrozenTextCache(TEXTS, frozen.opts, n_views=3, seed=7, cache_dir=tmp_path, progress=False)
    assert second.loaded_from_disk and calls == []
    torch.testing.assert_close(second.base, first.base, atol=0, rtol=0)
    torch.testing.assert_close(second.views, first.views, atol=0, rtol=0)

    # views: one of the pre-computed ones per item, reproducible with a seeded generator
    ids = torch.tensor([1, 3, 1])
    v1 = second.get_view(ids, torch.Generator().manual_seed(0))
    v2 = second.get_view(ids, torch.Generator().manual_seed(0))
    torch.testing.assert_close(v1, v2)
    for row, i in zip(v1, ids.tolist(), strict=True):
        assert any(torch.equal(row, second.views[i, k]) for k in range(3))
    assert second.get_view(ids, np.random.default_rng(0)).shape == (3, 384)

    # different texts or mask settings -> different key -> recomputed
    monkeypatch.undo()
    calls = _count_encode(monkeypatch, frozen)
    third = FrozenTextCache(TEXTS[:3], n_views=3, seed=7, cache_dir=tmp_path, encoder=frozen, progress=False)
    assert calls and not third.loaded_from_disk and third.key != first.key


def test_text_tower_frozen_dedupes(frozen: TextEncoder, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    tower = TextTower(TEXTS, out_dim=8, n_views=2, encoder=frozen, persist=False, progress=False)
    assert tower.cache is not None
    assert [id(p) for p in tower.trainable_parameters()] == [id(p) for p in tower.proj.parameters()]
    seen: list[list[int]] = []
    get, get_view = tower.cache.get, tower.cache.get_view
    monkeypatch.setattr(tower.cache, "get", lambda ids: (seen.append(list(ids.tolist())), get(ids))[1])
    monkeypatch.setattr(
        tower.cache, "get_view", lambda ids, rng=None: (seen.append(list(ids.tolist())), get_view(ids, rng))[1]
    )
    ids = torch.tensor([3, 1, 3, 3, 0])
    out = tower(ids)
    assert out.shape == (5, 8) and seen == [[0, 1, 3]]
    torch.testing.assert_close(out[0], out[2])
    out_view = tower(ids, view=True)
    assert out_view.shape == (5, 8) and seen[-1] == [0, 1, 3]
    torch.testing.assert_close(out_view[0], out_view[3])
    out.sum().backward()
    assert tower.proj.weight.grad is not None
    assert tower.all_items().shape == (4, 8)


def test_text_tower_lora_encodes_each_item_once(lora: TextEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    tower = TextTower(TEXTS, out_dim=8, encoder=lora, progress=False)
    assert tower.encoder is lora and tower.cache is None
    batches: list[list[str]] = []
    forward = lora.forward
    monkeypatch.setattr(lora, "forward", lambda texts: (batches.append(list(texts)), forward(texts))[1])
    ids = torch.tensor([2, 2, 0, 2, 0, 1])
    out = tower(ids)
    assert out.shape == (6, 8) and out.requires_grad
    assert batches == [[TEXTS[0], TEXTS[1], TEXTS[2]]]
    batches.clear()
    tower(ids, view=True)
    assert len(batches) == 1 and len(batches[0]) == 3
    assert all(len(m.split()) <= len(t.split()) for m, t in zip(batches[0], TEXTS[:3], strict=True))


def test_review_mean_pooling_averages_the_reviews(frozen: TextEncoder) -> None:
    from symcere.data.preprocess import TEXT_SEPARATOR

    per_review = TextEncoder(_opts(mode="frozen", max_tokens=16, batch_size=2, item_pooling="review_mean"))
    joined = [TEXT_SEPARATOR.join(TEXTS[:3]), TEXTS[3]]
    got = per_review.encode(joined)
    want = torch.stack([frozen.encode(TEXTS[:3]).mean(0), frozen.encode([TEXTS[3]])[0]])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # the concatenation embeds something else: the first review's 16 tokens dominate
    assert not torch.allclose(frozen.encode(joined[:1]), got[:1], atol=1e-3)
    # word masking keeps the review boundaries, so a masked text still averages 3 reviews
    masked = per_review.mask(joined[0], np.random.default_rng(0))
    assert len(split_reviews(masked)) == 3
    with pytest.raises(SymcereError, match="item_pooling"):  # choices are checked by the config loader
        load_config("symcere", overrides=["text.item_pooling=max"])


def test_split_reviews_never_returns_nothing() -> None:
    assert split_reviews("") == [""]
    assert split_reviews("a \n \n b") == ["a", "b"]


def test_cache_without_views_encodes_each_text_once(frozen: TextEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_encode(monkeypatch, frozen)
    cache = FrozenTextCache(TEXTS, n_views=0, encoder=frozen, persist=False, progress=False)
    assert sum(calls) == len(TEXTS)  # no masked variants when nothing uses them (SymCERE with alpha 0)
    assert cache.base.shape == (4, 384) and cache.views.shape == (4, 0, 384)
    # without views the seed cannot matter, so every seed of a study shares one cache file
    assert FrozenTextCache(TEXTS, n_views=0, seed=5, encoder=frozen, persist=False, progress=False).key == cache.key
    assert FrozenTextCache(TEXTS, n_views=1, seed=5, encoder=frozen, persist=False, progress=False).key != cache.key
    with pytest.raises(SymcereError, match="without masked views"):
        cache.get_view([0])
