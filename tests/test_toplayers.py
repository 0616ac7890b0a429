"""Speed paths of the text side with the packaged MiniLM: length buckets, the per-review store, bf16 against
fp32, checkpointed micro-batches, and LoRA on the top layers over cached lower-layer states."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from symcere.data.preprocess import TEXT_SEPARATOR
from symcere.errors import SymcereError
from symcere.schema import TextOptions
from symcere.text import FrozenTextCache, TextEncoder, TextTower
from symcere.text.cache import ReviewStore
from symcere.text.encoder import length_buckets, pool_items
from symcere.text.toplayers import TopLayerEncoder

REVIEWS = [
    "Great strings, they stayed in tune for weeks and sound bright.",
    "The cable crackles after a month.",
    "This pedal adds a warm overdrive without killing the low end at all, even with the gain turned up high.",
    "Cheap tuner but it works.",
    "Sturdy stand.",
    "The strap is comfortable for long gigs and the leather looks better every week.",
]
ITEMS = [TEXT_SEPARATOR.join(REVIEWS[:3]), REVIEWS[3], TEXT_SEPARATOR.join(REVIEWS[4:]), REVIEWS[1]]


@pytest.fixture(scope="module", autouse=True)
def _offline(tmp_path_factory: pytest.TempPathFactory) -> object:
    old = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "SYMCERE_CACHE")}
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["SYMCERE_CACHE"] = str(tmp_path_factory.mktemp("symcere-cache"))
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _opts(**kw: object) -> TextOptions:
    return TextOptions(**{"max_tokens": 24, "batch_size": 2, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def frozen() -> TextEncoder:
    return TextEncoder(_opts(item_pooling="review_mean"))


def test_length_buckets_respect_the_budget_and_cover_every_sequence() -> None:
    lengths = [5, 40, 3, 12, 12, 7, 100, 1]
    groups = length_buckets(lengths, 24)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(lengths)))
    for g in groups:
        widths = [lengths[i] for i in g]
        assert len(g) == 1 or len(g) * max(widths) <= 24
        assert widths == sorted(widths)
    assert [len(g) for g in length_buckets([4] * 6, 8)] == [2, 2, 2]


def test_bucketed_encoding_equals_one_text_at_a_time(frozen: TextEncoder) -> None:
    alone = torch.cat([frozen._embed([r]) for r in REVIEWS])
    bucketed = frozen.encode_sequences(REVIEWS)
    torch.testing.assert_close(bucketed, alone, atol=1e-5, rtol=0)
    # item pooling: the mean of each item's reviews
    want = torch.stack([alone[:3].mean(0), alone[3], alone[4:].mean(0), alone[1]])
    torch.testing.assert_close(frozen.encode(ITEMS), want, atol=1e-5, rtol=0)
    assert torch.equal(pool_items(alone, list(range(6)), 6), alone)


def test_bf16_embeddings_agree_with_fp32(frozen: TextEncoder) -> None:
    """bf16 autocast changes the embeddings by rounding only: cosine to fp32 above 0.99 for every text."""
    half = TextEncoder(_opts(item_pooling="review_mean", bf16=True))
    a, b = frozen.encode_sequences(REVIEWS), half.encode_sequences(REVIEWS)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1)
    assert b.dtype == torch.float32 and bool((cos > 0.99).all()), cos


def test_review_store_never_re_encodes_a_review(frozen: TextEncoder, tmp_path, monkeypatch) -> None:
    calls: list[int] = []
    original = frozen.encode_sequences

    def counting(seqs, batch_size=None, progress=False):  # type: ignore[no-untyped-def]
        calls.append(len(seqs))
        return original(seqs, batch_size=batch_size, progress=progress)

    monkeypatch.setattr(frozen, "encode_sequences", counting)
    first = FrozenTextCache(ITEMS, n_views=0, encoder=frozen, cache_dir=tmp_path, progress=False)
    assert sum(calls) == len(REVIEWS)  # every distinct review once (REVIEWS[1] is in two items)
    assert len(list(tmp_path.glob("reviews_*.pt"))) == 1
    # the shuffled-texts control: another item order, another item-level file, not one review encoded
    perm = [2, 0, 3, 1]
    calls.clear()
    shuffled = FrozenTextCache([ITEMS[j] for j in perm], n_views=0, encoder=frozen, cache_dir=tmp_path, progress=False)
    assert calls == [] and shuffled.key != first.key and not shuffled.loaded_from_disk
    torch.testing.assert_close(shuffled.base, first.base[perm], atol=0, rtol=0)
    # masked views: only the masked reviews are new
    calls.clear()
    FrozenTextCache(ITEMS, n_views=2, seed=3, encoder=frozen, cache_dir=tmp_path, progress=False)
    assert 0 < sum(calls) <= 2 * len(REVIEWS) + 2
    store = ReviewStore(tmp_path, first_store_key(frozen))
    assert len(store) >= len(REVIEWS)


def first_store_key(enc: TextEncoder) -> str:
    from symcere.text.cache import review_store_key
    from symcere.text.models import model_fingerprint

    return review_store_key(enc.opts, model_fingerprint(enc.model_path))


def _lora(**kw: object) -> TextEncoder:
    torch.manual_seed(0)
    enc = TextEncoder(_opts(mode="lora", lora_dropout=0.0, **kw))
    with torch.no_grad():  # non-zero adapters, so that the test sees them
        for name, p in enc.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return enc


def test_lora_layers_adapt_only_the_top_layers() -> None:
    enc = _lora(lora_layers=2, item_pooling="concat")
    trainable = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert trainable and all(".layer.4." in n or ".layer.5." in n for n in trainable)
    assert enc.lora_layers == 2
    assert _lora(lora_layers=6, item_pooling="concat").lora_layers is None  # all 6 layers: the ordinary path


def test_cached_lower_layers_equal_the_full_forward() -> None:
    enc = _lora(lora_layers=2, item_pooling="concat")
    enc.eval()
    top = TopLayerEncoder(enc, REVIEWS, 2, progress=False)
    assert top.states.shape[0] == sum(len(x) for x in enc.token_ids(REVIEWS))
    rows = torch.tensor([3, 0, 5, 0, 2])
    full = enc.embed_ids([enc.token_ids(REVIEWS)[i] for i in rows.tolist()])
    torch.testing.assert_close(top(rows), full, atol=1e-5, rtol=1e-5)
    # gradients reach the adapters of the top layers and match the full forward's
    grads = []
    for fn in (lambda: top(rows), lambda: enc.embed_ids([enc.token_ids(REVIEWS)[i] for i in rows.tolist()])):
        enc.zero_grad()
        fn().pow(2).sum().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in enc.trainable_parameters()]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_checkpointed_micro_batches_give_the_same_gradients() -> None:
    enc = _lora(item_pooling="concat", micro_batch=1, checkpointing=True)
    enc.eval()
    ids = enc.token_ids(REVIEWS)
    results = []
    for ckpt, micro in ((True, 1), (False, 64)):
        enc.opts.checkpointing, enc.opts.micro_batch = ckpt, micro
        enc.zero_grad()
        out = enc.embed_ids(ids)
        out.pow(2).sum().backward()
        results.append((out.detach(), torch.cat([p.grad.reshape(-1) for p in enc.trainable_parameters()])))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-5, rtol=1e-5)
    # the same gradients up to fp32 summation order (one padded batch of 64 vs 1-row micro-batches): a lost or
    # doubled micro-batch would be off by O(1) of the gradient's norm
    g_micro, g_full = results[0][1], results[1][1]
    assert ((g_micro - g_full).norm() / g_full.norm()).item() < 1e-4
    torch.testing.assert_close(g_micro, g_full, atol=1e-3 * g_full.abs().max().item(), rtol=1e-3)


def test_tower_with_lora_layers_uses_cached_views() -> None:
    enc = _lora(lora_layers=1, item_pooling="review_mean")
    tower = TextTower(ITEMS, 8, encoder=enc, n_views=2, seed=1, progress=False)
    assert tower.top is not None and len(tower.top) >= len(REVIEWS)
    tower.eval()
    ids = torch.tensor([2, 0, 2])
    want = tower.proj(enc.encode([ITEMS[2], ITEMS[0]]))
    torch.testing.assert_close(tower(ids), want[[0, 1, 0]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tower.all_items(), tower.proj(enc.encode(ITEMS)), atol=1e-5, rtol=1e-5)
    tower.reseed(0)
    a = tower(ids, view=True)
    tower.reseed(0)
    torch.testing.assert_close(tower(ids, view=True), a, atol=0, rtol=0)
    tower.train()
    tower(ids, view=True).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.trainable_parameters())
    no_views = TextTower(ITEMS, 8, encoder=enc, n_views=0, progress=False)
    with pytest.raises(SymcereError, match="without masked views"):
        no_views(ids, view=True)
