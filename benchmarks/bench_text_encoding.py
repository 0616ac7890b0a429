"""Text-encoding throughput of the frozen MiniLM (texts/s, real tokens/s) and the first-time encoding of a dataset.

    flock /tmp/symcere-heavy.lock python benchmarks/bench_text_encoding.py [--data DATASET_DIR] [--rounds 3]
        [--sample 3000] [--device cpu] [--out benchmarks/results/text_encoding.md]

Without ``--data`` the built-in dataset is generated in a temporary folder. Per round, on ``--sample`` reviews
of the dataset: fp32 and bf16 through ``TextEncoder.encode_sequences`` (tokenised once, length-sorted buckets),
and the path before issue 12 ("legacy": 32 items per forward, all their reviews padded to the longest one, items
sorted by total text length). The first-time encoding of the whole dataset (``FrozenTextCache`` with an empty
``SYMCERE_CACHE``, default settings + bf16) runs in a child process per round. bf16 is checked against fp32
(cosine of each embedding).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, run_child, stats, write_results  # noqa: E402

CHILD = """
import json, os, sys, time, torch
from symcere.data import Dataset
from symcere.schema import TextOptions
from symcere.text import FrozenTextCache, quiet_hf
from symcere.training.seeding import configure_threads
configure_threads(None, kind="text")
d = Dataset.load(sys.argv[1])
opts = TextOptions(bf16=sys.argv[2] == "1")
t0 = time.perf_counter()
with quiet_hf():
    cache = FrozenTextCache(list(d.item_texts), opts, n_views=0, progress=False)
    if sys.argv[3] != "cpu":
        cache.to(sys.argv[3])
print(json.dumps({"seconds": time.perf_counter() - t0, "items": len(cache), "loaded": cache.loaded_from_disk}))
"""


def legacy_encode(enc, texts: list[str]):  # type: ignore[no-untyped-def]
    """The encoding path before issue 12: batches of 32 items, one forward over all their reviews."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.empty(len(texts), enc.hidden_size)
    with torch.no_grad():
        for start in range(0, len(order), 32):
            idx = order[start : start + 32]
            seqs, owner = enc.item_sequences([texts[i] for i in idx])
            emb = enc._embed(seqs)
            from symcere.text.encoder import pool_items

            out[idx] = pool_items(emb, owner, len(idx)).cpu()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sample", type=int, default=3000, help="reviews per throughput measurement")
    ap.add_argument("--legacy-items", type=int, default=160, help="items for the pre-issue-12 path")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "text_encoding.md"))
    args = ap.parse_args()

    import numpy as np
    import torch

    from symcere.data import Dataset
    from symcere.schema import TextOptions
    from symcere.text import TextEncoder, quiet_hf
    from symcere.text.masking import split_reviews
    from symcere.training.seeding import configure_threads

    threads = configure_threads(None, kind="text")
    tmp = tempfile.mkdtemp(prefix="symcere-bench-")
    data = args.data
    if data is None:
        from symcere.data.synthetic import make_synthetic_dataset

        data = f"{tmp}/synthetic"
        make_synthetic_dataset(data)
    ds = Dataset.load(data)
    texts = list(ds.item_texts)
    reviews = list(dict.fromkeys(r for t in texts for r in split_reviews(t)))
    rng = np.random.default_rng(0)
    sample = [reviews[i] for i in rng.choice(len(reviews), min(args.sample, len(reviews)), replace=False)]
    legacy_items = [texts[i] for i in rng.choice(len(texts), min(args.legacy_items, len(texts)), replace=False)]
    legacy_reviews = sum(len(split_reviews(t)) for t in legacy_items)
    with quiet_hf():
        encoders = {bf16: TextEncoder(TextOptions(bf16=bf16)).to(args.device) for bf16 in (False, True)}
    n_tokens = sum(len(x) for x in encoders[False].token_ids(sample))
    rows: dict[str, list[float]] = {}
    first: list[float] = []
    cos_min: list[float] = []
    for _ in range(args.rounds):
        for bf16, enc in encoders.items():
            enc.encode_sequences(sample[:64])  # warm-up
            t0 = time.perf_counter()
            emb = enc.encode_sequences(sample)
            dt = time.perf_counter() - t0
            rows.setdefault(f"bucketed {'bf16' if bf16 else 'fp32'} texts/s", []).append(len(sample) / dt)
            rows.setdefault(f"bucketed {'bf16' if bf16 else 'fp32'} tokens/s", []).append(n_tokens / dt)
            if bf16:
                ref = encoders[False].encode_sequences(sample[:500])
                cos = torch.nn.functional.cosine_similarity(ref, emb[:500].to(ref.device), dim=1)
                cos_min.append(float(cos.min()))
            t0 = time.perf_counter()
            legacy_encode(enc, legacy_items)
            dt = time.perf_counter() - t0
            rows.setdefault(f"legacy {'bf16' if bf16 else 'fp32'} texts/s", []).append(legacy_reviews / dt)
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "SYMCERE_CACHE": cache}
            res = run_child([sys.executable, "-c", CHILD, data, "1", args.device], env=env)
            first.append(res["seconds"])
    table = ["| measure | median (min-max) over rounds |", "|---|---|"]
    table += [f"| {k} | {stats(v, 1)} |" for k, v in rows.items()]
    speedup = median(rows["bucketed bf16 texts/s"]) / median(rows["legacy bf16 texts/s"])
    body = "\n".join(table) + (
        f"\n\n{len(sample)} distinct reviews ({n_tokens} real tokens, max_tokens 128) per measurement; legacy: "
        f"{len(legacy_items)} items = {legacy_reviews} reviews. bucketed bf16 / legacy bf16 = {speedup:.2f}x. "
        f"Threads: {threads}. bf16 vs fp32: minimum cosine over 500 reviews {min(cos_min):.5f}."
    )
    first_body = (
        f"`FrozenTextCache` of all {len(texts)} items ({len(reviews)} distinct reviews), review_mean, bf16, "
        f"empty cache, in a child process (model load included): {stats(first, 1)} s"
    )
    write_results(
        Path(args.out),
        "Text encoding (frozen all-MiniLM-L6-v2)",
        [("Throughput", body), ("First-time encoding of the dataset", first_body)],
        {"args": vars(args), "rounds": rows, "first_time_seconds": first, "bf16_min_cosine": cos_min,
         "n_tokens": n_tokens, "threads": threads, "device": args.device, "data": data},
    )
    print(json.dumps({k: median(v) for k, v in rows.items()}))


if __name__ == "__main__":
    main()
