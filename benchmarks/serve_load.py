"""Load benchmark of ``symcere serve`` on loopback: latency percentiles and throughput of /recommend and /explain,
plus the recall and per-query cost of the FAISS index against exact search.

Bounded by construction: the server is started on 127.0.0.1, sent ``--requests`` requests per endpoint at
``--concurrency`` in flight, then stopped. Run it alone (the client shares the machine with the server):

    flock /tmp/symcere-heavy.lock .venv/bin/python benchmarks/serve_load.py RUN_DIR

Phases:
1. /recommend for users drawn uniformly (seeded, with replacement).
2. /explain, first request per item ("cold": the item's leave-one-word-out table is built), sequential, for the
   ``--explain-items`` items most often ranked first; /health is polled meanwhile (it must answer while busy).
3. /explain for (user, item) pairs with the item in the user's top 10 among those items ("warm": cached tables).
4. FAISS (in-process): recall@10 against exact search on the run's catalogue, and on a synthetic catalogue of
   ``--ann-items`` clustered vectors, with the per-query search time of both.

Writes ``<out>.md`` and ``<out>.json`` (default ``benchmarks/results/serve_load``) and ``<out>_example.json``, one
explanation in full.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def summary(lat: list[float], wall: float, statuses: Counter) -> dict:
    a = np.asarray(lat) * 1000
    return {
        "requests": len(lat),
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
        "req_per_s": len(lat) / wall,
        "wall_s": wall,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


async def load(url: str, paths: list[tuple[str, dict]], concurrency: int) -> tuple[dict, list]:
    import httpx

    lat: list[float] = []
    statuses: Counter = Counter()
    bodies: list = [None] * len(paths)
    queue: asyncio.Queue = asyncio.Queue()
    for j, p in enumerate(paths):
        queue.put_nowait((j, p))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as client:

        async def worker() -> None:
            while not queue.empty():
                j, (path, params) = queue.get_nowait()
                t0 = time.perf_counter()
                r = await client.get(path, params=params)
                lat.append(time.perf_counter() - t0)
                statuses[r.status_code] += 1
                bodies[j] = r.json() if r.status_code == 200 else None

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return summary(lat, wall, statuses), bodies


def cold_explains(url: str, pairs: list[tuple[str, str]]) -> tuple[dict, list, dict]:
    """Sequential first explanations, with /health polled every 50 ms from another thread meanwhile."""
    import threading

    import httpx

    health: list[float] = []
    health_status: Counter = Counter()
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                r = c.get("/health")
                health.append(time.perf_counter() - t0)
                health_status[r.status_code] += 1
                stop.wait(0.05)

    thread = threading.Thread(target=poll)
    thread.start()
    lat, statuses, bodies = [], Counter(), []
    start = time.perf_counter()
    with httpx.Client(base_url=url, timeout=600) as c:
        for user, item in pairs:
            t0 = time.perf_counter()
            r = c.get("/explain", params={"user": user, "item": item})
            lat.append(time.perf_counter() - t0)
            statuses[r.status_code] += 1
            bodies.append(r.json())
    wall = time.perf_counter() - start
    stop.set()
    thread.join()
    return summary(lat, wall, statuses), bodies, summary(health, wall, health_status)


def ann_phase(run_dir: str, n_items: int, seed: int) -> dict:
    import torch

    from symcere.api import Run
    from symcere.serving import Service
    from symcere.serving.index import ExactIndex, FaissIndex, recall_at_k

    out: dict = {"run": {}, "synthetic": {}}
    run = Run.load(run_dir, device="cpu")
    for kind in ("hnsw", "ivf"):
        svc = Service(run, ann_threshold=0, ann_kind=kind, recall_users=10**9, seed=seed)
        out["run"][kind] = {**svc.index_info, "users": len(svc.user_ids), "items": svc.n_items}

    g = torch.Generator().manual_seed(seed)
    dim, clusters = 64, 256
    centres = torch.randn(clusters, dim, generator=g)
    assign = torch.randint(clusters, (n_items,), generator=g)
    items = centres[assign] + 0.5 * torch.randn(n_items, dim, generator=g)
    queries = centres[torch.randint(clusters, (500,), generator=g)] + 0.5 * torch.randn(500, dim, generator=g)

    def per_query(index) -> tuple[torch.Tensor, float]:
        found, t0 = [], time.perf_counter()
        for q in queries:  # one request = one query
            found.append(index.search(q.unsqueeze(0), 10)[0])
        return torch.cat(found), (time.perf_counter() - t0) / len(queries) * 1000

    exact = ExactIndex(items)
    exact_found, exact_ms = per_query(exact)
    out["synthetic"] = {"items": n_items, "dim": dim, "queries": len(queries), "exact_ms_per_query": exact_ms}
    for kind in ("hnsw", "ivf"):
        t0 = time.perf_counter()
        index = FaissIndex(items, kind, seed=seed)
        build = time.perf_counter() - t0
        found, ms = per_query(index)
        out["synthetic"][kind] = {
            **index.params,
            "build_s": build,
            "ms_per_query": ms,
            "recall@10": recall_at_k(found, exact_found, 10),
        }
    return out


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        "# symcere serve: load benchmark (loopback)",
        "",
        f"Run: `{res['run_dir']}` ({res['model']}, {res['users']} users, {res['items']} items). Machine: "
        f"{m['cpu']}, {m['cores']} cores, torch {m['torch']}, load average before start {m['loadavg']}. "
        f"Client and server share the machine; concurrency {res['concurrency']}.",
        "",
        "| phase | requests | p50 ms | p90 ms | p99 ms | max ms | req/s | statuses |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in res["phases"].items():
        lines.append(
            f"| {name} | {s['requests']} | {s['p50_ms']:.1f} | {s['p90_ms']:.1f} | {s['p99_ms']:.1f} | "
            f"{s['max_ms']:.1f} | {s['req_per_s']:.1f} | {s['statuses']} |"
        )
    e = res["explain_cold_items"]
    lines += [
        "",
        f"Cold explanations: {e['items']} items (the most often ranked first), {e['mean_texts_encoded']:.0f} texts "
        f"encoded per item on average (the item's reviews plus one per (review, word) pair); /health polled every "
        "50 ms meanwhile (row `health during cold explain`).",
        "",
        "## FAISS against exact search",
        "",
        "| catalogue | index | parameters | recall@10 | ms / query | build s |",
        "|---|---|---|---|---|---|",
    ]
    a = res["ann"]
    for kind, info in a["run"].items():
        params = ", ".join(f"{k}={v}" for k, v in info.items() if k in ("hnsw_m", "ef_search", "nlist", "nprobe"))
        lines.append(
            f"| this run ({info['items']} items, all {info['users']} users) | {kind} | {params} | "
            f"{info['recall@10']:.4f} | | |"
        )
    s = a["synthetic"]
    lines.append(
        f"| synthetic {s['items']:,} x {s['dim']} ({s['queries']} queries) | exact | | 1 | "
        f"{s['exact_ms_per_query']:.2f} | |"
    )
    for kind in ("hnsw", "ivf"):
        info = s[kind]
        params = ", ".join(f"{k}={v}" for k, v in info.items() if k in ("hnsw_m", "ef_search", "nlist", "nprobe"))
        lines.append(
            f"| synthetic | {kind} | {params} | {info['recall@10']:.4f} | {info['ms_per_query']:.2f} | "
            f"{info['build_s']:.1f} |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--explain-items", type=int, default=20)
    p.add_argument("--ann-items", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve_load"))
    args = p.parse_args()

    import torch

    from symcere.io import write_json, write_text

    rng = np.random.default_rng(args.seed)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    loadavg = os.getloadavg()
    server = subprocess.Popen(
        [sys.executable, "-m", "symcere", "serve", args.run_dir, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import httpx

        for _ in range(1200):
            try:
                health = httpx.get(f"{url}/health", timeout=1).json()
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise SystemExit("the server did not start")
        users = [str(u) for u in _user_ids(args.run_dir)]
        phases: dict = {}
        picks = rng.choice(len(users), size=args.requests)
        rec_paths = [("/recommend", {"user": users[j], "k": 10}) for j in picks]
        phases["recommend"], recs = asyncio.run(load(url, rec_paths, args.concurrency))

        first = Counter(b["items"][0]["item"] for b in recs if b and b["items"])
        pool = [i for i, _ in first.most_common(args.explain_items)]
        owner = {}
        for b in recs:
            if b:
                for x in b["items"]:
                    if x["item"] in pool:
                        owner.setdefault(x["item"], b["user"])
        cold_pairs = [(owner[i], i) for i in pool]
        phases["explain (cold: first per item, sequential)"], cold_bodies, phases["health during cold explain"] = (
            cold_explains(url, cold_pairs)
        )
        candidates = [(b["user"], x["item"]) for b in recs if b for x in b["items"] if x["item"] in pool]
        chosen = [candidates[j] for j in rng.choice(len(candidates), size=args.requests)]
        exp_paths = [("/explain", {"user": u, "item": i}) for u, i in chosen]
        phases["explain (warm: cached tables)"], bodies = asyncio.run(load(url, exp_paths, args.concurrency))
        health_after = httpx.get(f"{url}/health").json()
    finally:
        server.terminate()
        server.wait(timeout=60)

    tables = [int(b.get("words_tested", 0)) for b in cold_bodies]
    res = {
        "run_dir": args.run_dir,
        "model": health["model"],
        "users": health["users"],
        "items": health["items"],
        "concurrency": args.concurrency,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "loadavg": [round(x, 2) for x in loadavg],
        },
        "phases": phases,
        "explain_cold_items": {
            "items": len(cold_pairs),
            "mean_words_tested": float(np.mean(tables)) if tables else 0.0,
            "mean_texts_encoded": _mean_encoded(args.run_dir, pool),
        },
        "health_after": health_after,
        "ann": ann_phase(args.run_dir, args.ann_items, args.seed),
    }
    res["machine"]["cpu"] = _cpu_name() or res["machine"]["cpu"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), res)
    write_text(out.with_suffix(".md"), markdown(res))
    example = next((b for b in bodies if b and b["words"]), None)
    write_json(out.parent / f"{out.name}_example.json", example)
    print(markdown(res))
    return 0


def _user_ids(run_dir: str) -> list[str]:
    from symcere.api import Run

    return list(Run.load(run_dir, device="cpu").dataset.user_ids)


def _mean_encoded(run_dir: str, pool: list[str]) -> float:
    """Texts encoded per cold explanation (recomputed in-process on the items' texts, counting only)."""
    from symcere.api import Run
    from symcere.serving import explain as xp
    from symcere.text.masking import split_reviews

    run = Run.load(run_dir, device="cpu")
    enc = run.model.text_encoder()
    pos = {str(i): n for n, i in enumerate(run.dataset.item_ids)}
    counts = []
    for item in pool:
        text = run.model.text.texts[pos[item]]
        parts = split_reviews(text) if enc.opts.item_pooling == "review_mean" else [text]
        n = len(parts)
        for part in parts:
            vis = xp.visible_words(enc.tokenizer, part, enc.opts.max_tokens)
            n += sum(1 for w in xp.distinct_words(part) if vis is None or w in vis)
        counts.append(n)
    return float(np.mean(counts)) if counts else 0.0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


if __name__ == "__main__":
    raise SystemExit(main())
