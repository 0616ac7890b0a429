"""symcere.text without a real model: cache key and file format pinned, tables follow the tower's device and
dtype, the public view generator, item_texts, and an import that does not load transformers."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from symcere.extras import MissingExtra
from symcere.schema import TextOptions
from symcere.text import FrozenTextCache, TextEncoder, TextTower, item_texts, mask_words, quiet_hf
from symcere.text import cache as cache_mod
from symcere.text.encoder import bf16_autocast
from symcere.text.models import model_fingerprint

TEXTS = ["Great strings.", "The cable crackles after a month.", "caf\u00e9 \u00fcber \n zwei"]
FINGERPRINT = {
    "path": "/models/minilm",
    "config_sha256": "0" * 64,
    "weights": [("model.safetensors", 1234, 1_700_000_000_000_000_000)],
}
MTIME_NS = 1_700_000_000_000_000_000
HIDDEN = 6


def _opts(**kw: object) -> TextOptions:
    """Every setting the cache key reads, spelled out (the old TextEncoderConfig defaults)."""
    base = {"model": "minilm", "pooling": "mean", "max_tokens": 16, "item_pooling": "concat"}
    return TextOptions(**{**base, "mask_strategy": "drop", "mask_rate": 0.15, **kw})  # type: ignore[arg-type]


def test_cache_key_is_the_one_the_old_code_computed() -> None:
    """Keys computed by models/text.py (FrozenTextCache._key) before the split, for the same inputs: a cache
    written by the old code is found by the new one."""
    key = cache_mod.cache_key
    assert key(_opts(), FINGERPRINT, 3, 7, TEXTS) == "a4c3b409666a4abd5b753a3fc9531a1a658afa8a6ffff10f757906ce9ef716b0"
    no_views = "5a115a4d816d47fed1e595acc3f5c8b9f849caca8beb63b8ff15f291f502cbb6"
    assert key(_opts(), FINGERPRINT, 0, 7, TEXTS) == no_views
    assert key(_opts(mask_rate=0.5), FINGERPRINT, 0, 3, TEXTS) == no_views  # without views: seed, masking unused
    other = _opts(
        model="mpnet", pooling="cls", max_tokens=64, item_pooling="review_mean", mask_strategy="token", mask_rate=0.3
    )
    assert key(other, FINGERPRINT, 2, 1, TEXTS) == "e110d6fec11e10a66bd9e68c0fcabdb72bd8f8d727fa62b83f399a3e29130544"
    # settings the embeddings do not depend on leave the key alone
    unrelated = _opts(mode="lora", lora_r=4, batch_size=3, bf16=True, n_views=9, lr=0.1, shuffle_items=True)
    assert key(unrelated, FINGERPRINT, 3, 7, TEXTS) == key(_opts(), FINGERPRINT, 3, 7, TEXTS)


def _model_dir(root: Path) -> Path:
    model = root / "model"
    model.mkdir()
    (model / "config.json").write_bytes(b'{"hidden_size": 4}')
    (model / "model.safetensors").write_bytes(b"x" * 10)
    (model / "pytorch_model.bin").write_bytes(b"abc")
    (model / "tokenizer.json").write_bytes(b"{}")
    for p in model.iterdir():
        os.utime(p, ns=(MTIME_NS, MTIME_NS))
    return model


def test_model_fingerprint_is_config_and_weight_files(tmp_path: Path) -> None:
    model = _model_dir(tmp_path)
    assert model_fingerprint(str(model)) == {
        "path": str(model),
        "config_sha256": hashlib.sha256(b'{"hidden_size": 4}').hexdigest(),
        "weights": [("model.safetensors", 10, MTIME_NS), ("pytorch_model.bin", 3, MTIME_NS)],
    }


class StubEncoder:
    """Stands in for a frozen ``TextEncoder``: a deterministic vector per text, counting what it encodes."""

    def __init__(self, opts: TextOptions, model_path: str) -> None:
        self.opts, self.model_path, self.encoded = opts, model_path, 0

    def mask(self, text: str, rng: np.random.Generator) -> str:
        return mask_words(text, self.opts.mask_rate, rng, self.opts.mask_strategy)

    def encode(self, texts: list[str], progress: bool = False) -> torch.Tensor:
        self.encoded += len(texts)
        seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
        return torch.stack([torch.randn(HIDDEN, generator=torch.Generator().manual_seed(s)) for s in seeds])


@pytest.fixture()
def warm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A cache file for TEXTS (2 views, seed 7) of a fake local model; building a real encoder fails."""
    opts = _opts(model=str(_model_dir(tmp_path)), cache_dir=str(tmp_path / "cache"))
    stub = StubEncoder(opts, str(Path(opts.model).resolve()))
    first = FrozenTextCache(TEXTS, encoder=stub, n_views=2, seed=7, progress=False)  # type: ignore[arg-type]
    monkeypatch.setattr(cache_mod, "TextEncoder", lambda *a, **k: pytest.fail("model built on cache hit"))
    return SimpleNamespace(opts=opts, first=first, stub=stub, dir=tmp_path / "cache")


def test_cache_file_format(warm: SimpleNamespace) -> None:
    first = warm.first
    assert not first.loaded_from_disk and 0 < warm.stub.encoded <= 3 * len(TEXTS)  # texts + 2 views
    files = list(warm.dir.iterdir())
    assert files == [warm.dir / f"text_{first.key[:32]}.pt"]  # atomic write: no temporary file left
    stored = torch.load(files[0], weights_only=True)
    assert set(stored) == {"key", "config", "n_views", "seed", "base", "views"}
    assert stored["key"] == first.key and (stored["n_views"], stored["seed"]) == (2, 7)
    assert stored["config"]["model"] == warm.opts.model and stored["config"]["item_pooling"] == "concat"
    torch.testing.assert_close(stored["base"], first.base, atol=0, rtol=0)
    torch.testing.assert_close(stored["views"], first.views, atol=0, rtol=0)


def test_a_file_written_by_the_old_code_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old writer's payload (torch.save of this dict at text_<key[:32]>.pt) is a cache hit."""
    opts = _opts(model=str(_model_dir(tmp_path)))
    key = cache_mod.cache_key(opts, model_fingerprint(str(Path(opts.model).resolve())), 2, 7, TEXTS)
    base, views = torch.randn(3, HIDDEN), torch.randn(3, 2, HIDDEN)
    old = {"key": key, "config": {"model": opts.model}, "n_views": 2, "seed": 7, "base": base, "views": views}
    (tmp_path / "cache").mkdir()
    torch.save(old, tmp_path / "cache" / f"text_{key[:32]}.pt")
    monkeypatch.setattr(cache_mod, "TextEncoder", lambda *a, **k: pytest.fail("model built on cache hit"))
    cache = FrozenTextCache(TEXTS, opts, n_views=2, seed=7, cache_dir=tmp_path / "cache", progress=False)
    assert cache.loaded_from_disk and cache.key == key
    torch.testing.assert_close(cache.base, base, atol=0, rtol=0)
    torch.testing.assert_close(cache.views, views, atol=0, rtol=0)


def test_cache_dir_defaults_to_the_symcere_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opts = _opts(model=str(_model_dir(tmp_path)))
    stub = StubEncoder(opts, str(Path(opts.model).resolve()))
    monkeypatch.setenv("SYMCERE_CACHE", str(tmp_path / "default"))
    cache = FrozenTextCache(TEXTS, encoder=stub, n_views=0, progress=False)  # type: ignore[arg-type]
    assert cache.path is not None and cache.path.parent == tmp_path / "default" and cache.path.is_file()
    memory = FrozenTextCache(TEXTS, encoder=stub, n_views=0, persist=False, progress=False)  # type: ignore[arg-type]
    assert memory.path is None and not memory.loaded_from_disk


def _tower(warm: SimpleNamespace, **kw: object) -> TextTower:
    tower = TextTower(TEXTS, 4, warm.opts, n_views=2, seed=7, progress=False, **kw)  # type: ignore[arg-type]
    assert tower.cache is not None and tower.cache.loaded_from_disk
    return tower


def test_tables_are_buffers_that_follow_the_tower(warm: SimpleNamespace) -> None:
    tower = _tower(warm)
    assert set(tower.state_dict()) == {"proj.weight", "proj.bias"}  # the tables are rebuilt, not checkpointed
    assert {n for n, _ in tower.named_buffers()} == {"cache.base", "cache.views"}
    tower.to(torch.float64)
    assert tower.cache.base.dtype == tower.cache.views.dtype == torch.float64
    ids = torch.tensor([2, 0, 2])
    assert tower(ids).dtype == tower(ids, view=True).dtype == tower.all_items().dtype == torch.float64
    tower.to("meta")
    assert {t.device.type for t in (tower.cache.base, tower.cache.views, tower.proj.weight)} == {"meta"}
    assert tower.cache.get([0, 1]).device.type == "meta"
    assert tower.cache.get_view([0, 1], np.random.default_rng(0)).device.type == "meta"


def test_tower_built_under_a_device_keeps_its_tables_there(warm: SimpleNamespace) -> None:
    with torch.device("meta"):
        tower = _tower(warm)
    assert tower.proj.weight.device.type == "meta"
    assert tower.cache.base.device.type == tower.cache.views.device.type == "meta"


def test_reseed_restarts_the_view_generator(warm: SimpleNamespace) -> None:
    tower = _tower(warm)
    ids = torch.arange(3).repeat(4)
    tower.reseed([7, 1, 1])
    a = tower.hidden(ids, view=True)
    tower.reseed([7, 1, 1])
    torch.testing.assert_close(tower.hidden(ids, view=True), a, atol=0, rtol=0)
    assert isinstance(tower.rng, np.random.Generator)


def test_item_texts_and_the_shuffled_control() -> None:
    ds = SimpleNamespace(item_texts=[f"text {i}" for i in range(20)])
    assert item_texts(ds) == ds.item_texts and item_texts(ds, shuffle=False, seed=3) == ds.item_texts
    perm = np.random.default_rng([3, 7]).permutation(20)
    assert item_texts(ds, shuffle=True, seed=3) == [ds.item_texts[j] for j in perm]
    assert item_texts(ds, shuffle=True, seed=3) != item_texts(ds, shuffle=True, seed=4)


def test_bf16_autocast_uses_the_device_type() -> None:
    with bf16_autocast(torch.device("cpu"), True):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with bf16_autocast(torch.device("cpu"), False):
        assert not torch.is_autocast_enabled("cpu")
    with bf16_autocast(torch.device("meta"), True):  # no bf16 autocast there: a no-op
        assert not torch.is_autocast_enabled("cpu")


def test_missing_transformers_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(MissingExtra, match=r"pip install 'symcere\[text\]'"):
        TextEncoder(_opts())
    with quiet_hf():  # nothing of Hugging Face to silence: still usable around a cache hit
        pass


def test_import_does_not_load_transformers_or_peft() -> None:
    code = (
        "import sys, symcere.text\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'peft'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
