"""symcere serve: every endpoint and error path through FastAPI's TestClient, equality with `symcere recommend`,
cold start of an item seen only in the test split, exact leave-one-word-out, export, the FAISS index."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from helpers import CLUSTER_WORDS, COLD_ITEM  # noqa: E402

import symcere  # noqa: E402
from symcere.api import Run  # noqa: E402
from symcere.cli import main  # noqa: E402
from symcere.serving import Service  # noqa: E402
from symcere.serving import explain as xp  # noqa: E402
from symcere.serving.app import create_app  # noqa: E402
from symcere.serving.index import ExactIndex, FaissIndex, recall_at_k, scoring_vectors  # noqa: E402

SMALL = {
    "model.dim": 16,
    "model.layers": 2,
    "train.threads": 1,
    "train.batch_size": 64,
    "train.lr": 0.01,
    "train.eval_every_steps": 1,
    "train.max_epochs": 6,
}


def _snapshot(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_dataset_dir):
    """A SymCERE run (packaged MiniLM, frozen, 32 tokens) and a LightGCN run on the tiny dataset."""
    root = tmp_path_factory.mktemp("serve")
    cache = root / "text-cache"
    sym = symcere.fit(
        tiny_dataset_dir,
        "symcere",
        config={**SMALL, "text.max_tokens": 32, "text.cache_dir": str(cache)},
        out=root / "symcere",
        progress=False,
    )
    lgn = symcere.fit(tiny_dataset_dir, "lightgcn", config=SMALL, out=root / "lightgcn", progress=False)
    return {"symcere": sym.run_dir, "lightgcn": lgn.run_dir}


@pytest.fixture(scope="module")
def sym_service(runs):
    return Service(Run.load(runs["symcere"], device="cpu"))


@pytest.fixture()
def sym_client(runs):
    """A fresh service per test: cold items added by one test never leak into another."""
    service = Service(Run.load(runs["symcere"], device="cpu"))
    with TestClient(create_app(service)) as client:
        yield client


@pytest.fixture(scope="module")
def lgn_client(runs):
    with TestClient(create_app(Service(Run.load(runs["lightgcn"], device="cpu")))) as client:
        yield client


def _field(response) -> set[str]:
    """The parameter names FastAPI's 422 names."""
    return {str(e["loc"][-1]) for e in response.json()["detail"]}


# -- health, recommend --------------------------------------------------------------------------------------------
def test_health(sym_client, lgn_client, tiny_dataset):
    h = sym_client.get("/health").json()
    assert h["status"] == "ok" and h["model"] == "symcere" and h["text_tower"] is True
    assert (h["users"], h["items"]) == (tiny_dataset.n_users, tiny_dataset.n_items)
    assert h["index"]["kind"] == "exact"
    assert lgn_client.get("/health").json()["text_tower"] is False
    assert sym_client.get("/docs").status_code == 200
    assert "/cold-start" in sym_client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("model", ["symcere", "lightgcn"])
def test_recommend_equals_cli_for_every_user(model, runs, tmp_path, tiny_dataset):
    out = tmp_path / "recs.tsv"
    assert main(["recommend", str(runs[model]), "--k", "10", "--out", str(out)]) == 0
    cli = pd.read_csv(out, sep="\t", dtype={"user": str, "item": str})
    with TestClient(create_app(Service(Run.load(runs[model], device="cpu")))) as client:
        for user in tiny_dataset.user_ids:
            got = client.get("/recommend", params={"user": user, "k": 10}).json()
            want = cli[cli["user"] == user]
            assert got["user"] == user
            assert [r["item"] for r in got["items"]] == want["item"].tolist()
            assert [r["rank"] for r in got["items"]] == want["rank"].tolist()
            np.testing.assert_allclose([r["score"] for r in got["items"]], want["score"], atol=1e-6)


def test_recommend_exclude_seen_false_may_return_seen(sym_service, tiny_dataset):
    user = tiny_dataset.user_ids[0]
    n = tiny_dataset.n_items
    everything = sym_service.recommend([user], k=n, exclude_seen=False)
    assert len(everything) == n and sorted(everything["item"]) == sorted(tiny_dataset.item_ids)
    scores = sym_service.model.score(torch.tensor([0]))[0].double().numpy()
    order = sorted(range(n), key=lambda j: (-scores[j], j))
    assert everything["item"].tolist() == [tiny_dataset.item_ids[j] for j in order]


def test_recommend_errors_name_the_field(sym_client):
    r = sym_client.get("/recommend", params={"user": "nobody"})
    assert r.status_code == 404 and "unknown user 'nobody'" in r.json()["detail"]
    assert _field(sym_client.get("/recommend")) == {"user"}
    assert _field(sym_client.get("/recommend", params={"user": "u000", "k": 0})) == {"k"}
    assert _field(sym_client.get("/recommend", params={"user": "u000", "k": "ten"})) == {"k"}
    assert _field(sym_client.get("/recommend", params={"user": "u000", "exclude_seen": "maybe"})) == {"exclude_seen"}


def test_one_log_line_per_request(sym_client, caplog):
    with caplog.at_level(logging.INFO, logger="symcere.serve"):
        sym_client.get("/health")
        sym_client.get("/recommend", params={"user": "nobody"})
    lines = [r.getMessage() for r in caplog.records if r.name == "symcere.serve"]
    assert len(lines) == 2
    assert '"GET /health" 200' in lines[0] and '"GET /recommend?user=nobody" 404' in lines[1]


def test_unexpected_failure_is_a_logged_500_and_the_server_goes_on(sym_client, monkeypatch, caplog):
    service = sym_client.app.state.service

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(service, "recommend", broken)
    with caplog.at_level(logging.INFO, logger="symcere.serve"):
        r = sym_client.get("/recommend", params={"user": "u000"})
    assert r.status_code == 500 and r.json() == {"detail": "internal error (logged by the server)"}
    assert any("RuntimeError: boom" in (r.exc_text or "") for r in caplog.records)
    assert sym_client.get("/health").status_code == 200


def test_health_answers_while_model_work_runs(sym_client, monkeypatch):
    service = sym_client.app.state.service
    entered, release = threading.Event(), threading.Event()
    real = service.explain

    def slow(*args, **kwargs):
        entered.set()
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "explain", slow)
    result = {}
    worker = threading.Thread(
        target=lambda: result.update(r=sym_client.get("/explain", params={"user": "u000", "item": "i001"}))
    )
    worker.start()
    try:
        assert entered.wait(30)
        assert sym_client.get("/health").json()["status"] == "ok"  # the explanation is still running
        assert worker.is_alive()
    finally:
        release.set()
        worker.join(60)
    assert result["r"].status_code == 200


# -- similar items --------------------------------------------------------------------------------------------
def test_similar_items(sym_client, sym_service, tiny_dataset):
    r = sym_client.get("/similar-items", params={"item": "i001", "k": 5}).json()
    assert r["item"] == "i001" and len(r["items"]) == 5 and "i001" not in [x["item"] for x in r["items"]]
    _, items = scoring_vectors(sym_service.model)
    v = torch.nn.functional.normalize(items.double(), dim=1)
    sims = (v @ v[tiny_dataset.item_ids.index("i001")]).numpy()
    order = [j for j in sorted(range(len(sims)), key=lambda j: (-sims[j], j)) if tiny_dataset.item_ids[j] != "i001"]
    assert [x["item"] for x in r["items"]] == [tiny_dataset.item_ids[j] for j in order[:5]]
    np.testing.assert_allclose([x["score"] for x in r["items"]], sims[order[:5]], atol=1e-5)
    missing = sym_client.get("/similar-items", params={"item": "nope"})
    assert missing.status_code == 404 and "unknown item 'nope'" in missing.json()["detail"]
    assert _field(sym_client.get("/similar-items", params={"item": "i001", "k": -1})) == {"k"}


# -- cold start ---------------------------------------------------------------------------------------------------
def test_cold_start_of_an_item_only_in_test(sym_client, sym_service, tiny_dataset_dir, tiny_dataset):
    frame = pd.read_parquet(tiny_dataset_dir / "interactions.parquet")
    cold = tiny_dataset.item_ids.index(COLD_ITEM)
    rows = frame[frame["item"] == cold]
    assert set(rows["split"]) == {"test"}  # never trained on
    reviews = rows["review"].tolist()
    n_users = tiny_dataset.n_users

    r = sym_client.post("/cold-start", json={"reviews": reviews, "k": n_users})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["added"] is False and "text tower" in body["method"]
    assert len(body["users"]) == n_users and [u["rank"] for u in body["users"]] == list(range(1, n_users + 1))
    # the ranking is the text tower's: <hat(g_u), hat(t(reviews))>
    model = sym_service.model
    t = model.embed_texts([" \n".join(reviews)])
    want = model.text_scores(torch.arange(n_users), t)[:, 0].double().numpy()
    np.testing.assert_allclose([u["score"] for u in body["users"]], np.sort(want)[::-1], atol=1e-5)
    # reviews of guitar words: the guitar cluster's users (u % 3 == 0) rank higher on average
    rank = {u["user"]: u["rank"] for u in body["users"]}
    guitar = [rank[u] for u in tiny_dataset.user_ids if int(u[1:]) % 3 == 0]
    other = [rank[u] for u in tiny_dataset.user_ids if int(u[1:]) % 3 != 0]
    assert np.mean(guitar) < np.mean(other)

    # with an id the item joins the served catalogue: /recommend can return it
    user = tiny_dataset.user_ids[0]
    before = sym_client.get("/recommend", params={"user": user, "k": 1000}).json()["items"]
    added = sym_client.post("/cold-start", json={"reviews": reviews, "k": 3, "item": COLD_ITEM}).json()
    assert added["added"] is True and added["item"] == COLD_ITEM and added["catalogue_items"] == tiny_dataset.n_items
    after = sym_client.get("/recommend", params={"user": user, "k": 1000}).json()["items"]
    assert [x["item"] for x in after] != [x["item"] for x in before]  # the cold item got a text-based vector
    assert COLD_ITEM in [x["item"] for x in after]
    svc = sym_client.app.state.service
    vec = svc.cold[COLD_ITEM].vector
    expected = float(svc.users_vec[0] @ vec)
    assert [x["score"] for x in after if x["item"] == COLD_ITEM][0] == pytest.approx(expected, abs=1e-5)
    assert sym_client.get("/explain", params={"user": user, "item": COLD_ITEM}).json()["words"]


def test_cold_start_new_item_id_extends_the_catalogue(sym_client, tiny_dataset):
    review = "snare drum cymbal beat stick"
    r = sym_client.post("/cold-start", json={"reviews": [review], "item": "brand-new"})
    assert r.status_code == 200 and r.json()["catalogue_items"] == tiny_dataset.n_items + 1
    assert sym_client.get("/health").json()["items"] == tiny_dataset.n_items + 1
    recs = sym_client.get("/recommend", params={"user": "u001", "k": 1000}).json()["items"]
    assert "brand-new" in [x["item"] for x in recs] and len(recs) == len({x["item"] for x in recs})
    sim = sym_client.get("/similar-items", params={"item": "brand-new", "k": 3})
    assert sim.status_code == 200 and len(sim.json()["items"]) == 3
    assert sym_client.post("/cold-start", json={"reviews": [review], "item": "brand-new"}).json()[
        "catalogue_items"
    ] == (tiny_dataset.n_items + 1)  # the same id again replaces its reviews


def test_cold_items_are_bounded(runs):
    service = Service(Run.load(runs["symcere"], device="cpu"), max_cold_items=1)
    service.cold_start(["guitar"], item="first")
    service.cold_start(["guitar chord"], item="first")  # replacing is fine
    with pytest.raises(symcere.SymcereError, match="limit"):
        service.cold_start(["drum"], item="second")
    assert service.health()["cold_items"] == 1


def test_cold_start_errors(sym_client, lgn_client):
    assert _field(sym_client.post("/cold-start", json={"reviews": []})) == {"reviews"}
    assert _field(sym_client.post("/cold-start", json={"k": 3})) == {"reviews"}
    assert _field(sym_client.post("/cold-start", json={"reviews": ["x"], "k": 0})) == {"k"}
    assert _field(sym_client.post("/cold-start", json={"reviews": [3]})) == {"0"}  # reviews[0]
    assert (
        sym_client.post("/cold-start", content=b"not json", headers={"content-type": "application/json"}).status_code
        == 422
    )
    warm = sym_client.post("/cold-start", json={"reviews": ["guitar"], "item": "i001"})
    assert warm.status_code == 409 and "training interactions" in warm.json()["detail"]
    no_text = lgn_client.post("/cold-start", json={"reviews": ["guitar"]})
    assert no_text.status_code == 400 and "text tower" in no_text.json()["detail"]


# -- explain --------------------------------------------------------------------------------------------------
def test_explain_is_exact_leave_one_word_out(sym_client, sym_service, tiny_dataset):
    r = sym_client.get("/explain", params={"user": "u000", "item": "i003", "n": 50})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "leave-one-word-out" in body["method"] and body["words"] and body["anchors"]
    model, pos = sym_service.model, tiny_dataset.item_ids.index("i003")
    text = model.text.texts[pos]
    assert body["words_tested"] == body["words_in_text"] == len(xp.distinct_words(text))
    u = torch.tensor([0])
    full = float(model.text_scores(u, model.embed_texts([text]))[0, 0])
    assert body["similarity"] == pytest.approx(full, abs=1e-5)
    for w in body["words"][:3]:  # brute force: drop the word from every review, re-encode the item
        reduced = " \n".join(xp.without_word(r, w["word"]) for r in text.split(" \n"))
        s = float(model.text_scores(u, model.embed_texts([reduced]))[0, 0])
        assert w["weight"] == pytest.approx(full - s, abs=1e-4)
    weights = [abs(w["weight"]) for w in body["words"]]
    assert weights == sorted(weights, reverse=True)
    assert all(a["weight"] > 0 for a in body["anchors"])
    cluster = set(CLUSTER_WORDS[0])  # i003 is a guitar item
    assert {a["word"] for a in body["anchors"]} <= set(xp.distinct_words(text)) and cluster & set(
        xp.distinct_words(text)
    )
    again = sym_client.get("/explain", params={"user": "u001", "item": "i003"}).json()  # cached table, new user
    assert again["user"] == "u001" and len(again["words"]) == min(10, body["words_tested"])


def test_explain_skips_words_past_the_token_limit_exactly(sym_service):
    encoder = sym_service.model.text_encoder()
    text = " ".join(f"word{j}" for j in range(60)) + " zebra"  # far past text.max_tokens=32
    visible = xp.visible_words(encoder.tokenizer, text, encoder.opts.max_tokens)
    assert visible is not None and "word0" in visible and "zebra" not in visible
    table = xp.loo_table(encoder, sym_service.model.text.proj, text)
    assert "zebra" not in table.words and table.n_words == 61
    plain = encoder.encode([text])
    assert torch.allclose(encoder.encode([xp.without_word(text, "zebra")]), plain, atol=1e-6)


def test_explain_errors(sym_client, lgn_client):
    assert sym_client.get("/explain", params={"user": "nobody", "item": "i001"}).status_code == 404
    missing = sym_client.get("/explain", params={"user": "u000", "item": "nope"})
    assert missing.status_code == 404 and "unknown item 'nope'" in missing.json()["detail"]
    assert _field(sym_client.get("/explain", params={"user": "u000"})) == {"item"}
    assert _field(sym_client.get("/explain", params={"user": "u000", "item": "i001", "n": 0})) == {"n"}
    no_text = lgn_client.get("/explain", params={"user": "u000", "item": "i001"})
    assert no_text.status_code == 400 and "text tower" in no_text.json()["detail"]


def test_without_word_and_distinct_words():
    assert xp.distinct_words("Great guitar, great sound!") == ["great", "guitar", "sound"]
    assert xp.without_word("Great guitar, great sound!", "great") == "guitar, sound!"
    assert xp.without_word("greatness great", "great") == "greatness"


# -- the run directory is read-only to the server ---------------------------------------------------------------
def test_serving_never_writes_the_run_dir(runs):
    before = _snapshot(runs["symcere"])
    with TestClient(create_app(Service(Run.load(runs["symcere"], device="cpu")))) as client:
        client.post("/cold-start", json={"reviews": ["guitar chord"], "item": "x-new"})
        client.get("/recommend", params={"user": "u000"})
        client.get("/explain", params={"user": "u000", "item": "x-new"})
    assert _snapshot(runs["symcere"]) == before


# -- Python API ---------------------------------------------------------------------------------------------------
def test_python_api(runs, tmp_path, tiny_dataset):
    run = symcere.load(runs["symcere"], device="cpu")
    sim = run.similar_items("i001", k=4)
    assert list(sim.columns) == ["item", "rank", "score"] and len(sim) == 4
    users = run.cold_start(["guitar chord fret strum"], k=5)
    assert list(users.columns) == ["user", "rank", "score"] and users["rank"].tolist() == [1, 2, 3, 4, 5]
    e = run.explain("u000", "i001", n=3)
    assert len(e["words"]) == 3 and e["method"].startswith("exact leave-one-word-out")
    with pytest.raises(symcere.SymcereError, match="unknown user"):
        run.explain("nobody", "i001")
    lgn = symcere.load(runs["lightgcn"], device="cpu")
    with pytest.raises(symcere.SymcereError, match="text tower"):
        lgn.cold_start(["x"])


# -- export -------------------------------------------------------------------------------------------------------
def test_export_parquet_and_safetensors(runs, tmp_path, tiny_dataset):
    run = symcere.load(runs["symcere"], device="cpu")
    users_vec, items_vec = scoring_vectors(run.model)
    written = run.export_embeddings(tmp_path / "pq", "parquet")
    assert {p.name for p in written} >= {"users.parquet", "items.parquet", "item_text.parquet", "embeddings.json"}
    items = pd.read_parquet(tmp_path / "pq" / "items.parquet")
    assert items["id"].tolist() == list(tiny_dataset.item_ids)
    np.testing.assert_allclose(np.stack(items["embedding"].to_numpy()), items_vec.numpy(), atol=1e-6)
    users = pd.read_parquet(tmp_path / "pq" / "users.parquet")
    product = np.stack(users["embedding"].to_numpy()) @ np.stack(items["embedding"].to_numpy()).T
    np.testing.assert_allclose(product, run.model.score(torch.arange(tiny_dataset.n_users)).numpy(), atol=1e-4)
    with pytest.raises(symcere.SymcereError, match="--force"):
        run.export_embeddings(tmp_path / "pq", "parquet")

    assert main(["export", str(runs["symcere"]), "--out", str(tmp_path / "st"), "--format", "safetensors"]) == 0
    from safetensors.numpy import load_file

    tensors = load_file(str(tmp_path / "st" / "embeddings.safetensors"))
    assert set(tensors) >= {"users", "items", "item_text"}
    np.testing.assert_allclose(tensors["item_text"], run.model.text.all_items().numpy(), atol=1e-6)
    assert main(["export", str(runs["symcere"]), "--out", str(tmp_path / "st"), "--format", "safetensors"]) == 2


# -- the FAISS index ---------------------------------------------------------------------------------------------
def test_faiss_index_against_exact_search():
    pytest.importorskip("faiss")
    g = torch.Generator().manual_seed(0)
    items = torch.randn(2000, 16, generator=g)
    queries = torch.randn(50, 16, generator=g)
    seen = (torch.rand(50, 2000, generator=g) < 0.01).numpy()
    import scipy.sparse as sp

    exclude = sp.csr_matrix(seen.astype(np.float32))
    exact_items, exact_scores = ExactIndex(items).search(queries, 10, exclude)
    flat_items, flat_scores = FaissIndex(items, "flat").search(queries, 10, exclude)
    assert torch.equal(flat_items, exact_items)  # exhaustive + exact re-scoring = exact
    torch.testing.assert_close(flat_scores, exact_scores)
    for kind in ("hnsw", "ivf"):
        approx, _ = FaissIndex(items, kind).search(queries, 10, exclude)
        assert recall_at_k(approx, exact_items, 10) > 0.8
        assert not any(seen[r, approx[r][approx[r] >= 0]].any() for r in range(50))


def test_service_above_the_ann_threshold_reports_its_recall(runs, tiny_dataset):
    pytest.importorskip("faiss")
    service = Service(Run.load(runs["symcere"], device="cpu"), ann_threshold=0, ann_kind="flat")
    h = service.health()
    assert h["index"]["kind"] == "faiss-flat" and h["index"]["recall@10"] == pytest.approx(1.0)
    with TestClient(create_app(service)) as client:
        got = client.get("/recommend", params={"user": "u000", "k": 10}).json()["items"]
    want = Run.load(runs["symcere"], device="cpu").recommend(["u000"], k=10)
    assert [x["item"] for x in got] == want["item"].tolist()
    service.cold_start(["drum snare"], item="cold-x")
    recs = service.recommend(["u000"], k=tiny_dataset.n_items + 1)
    assert "cold-x" in recs["item"].tolist() and recs["item"].is_unique


# -- CLI ------------------------------------------------------------------------------------------------------------
def test_cli_serve_starts_uvicorn(runs, monkeypatch):
    seen = {}
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    assert main(["serve", str(runs["lightgcn"]), "--port", "8123", "--device", "cpu"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123 and seen["access_log"] is False
    with TestClient(seen["app"]) as client:
        assert client.get("/health").json()["model"] == "lightgcn"
    assert main(["serve", str(runs["lightgcn"]), "--port", "70000"]) == 2


def test_server_on_loopback(runs):
    """The real thing: `symcere serve` in a subprocess, answered over loopback, then stopped."""
    import socket
    import subprocess
    import sys

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "symcere", "serve", str(runs["lightgcn"]), "--port", str(port), "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        assert httpx.get(f"{url}/recommend", params={"user": "u000", "k": 3}).json()["user"] == "u000"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert '"GET /recommend?user=u000&k=3" 200' in out.decode()
