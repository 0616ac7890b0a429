"""LoRA on a CPU: epoch seconds and peak RSS of the paper preset (``--preset paper``, text.mode=lora).

    flock /tmp/symcere-heavy.lock python benchmarks/bench_lora.py --data DATASET_DIR [--rounds 2] [--device cpu]
        [--preset paper] [--variant NAME=SET,SET ...] [--out benchmarks/results/lora.md]

``--preset default --variant "NAME=text.mode=lora,text.lora_layers=2,text.bf16=true"`` times the default
preset with LoRA (the study's ``symcere_lora`` row; ``benchmarks/results/lora_default.md``).

Each variant trains one epoch (``train.max_epochs=1``) in a child process; reported: the epoch's training
seconds (``log.jsonl``), the whole process (model load, tokenising, caching the lower layers, validation and
test) and the child's peak RSS. Default variants: LoRA on the top 2 layers (cached lower layers) with and
without activation checkpointing, and LoRA on all 6 layers (the paper) with checkpointed micro-batches.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_child, stats, write_results  # noqa: E402

VARIANTS = {
    "top 2 layers, bf16, checkpointed micro-batches": ["text.lora_layers=2", "text.bf16=true"],
    "top 2 layers, bf16, no checkpointing": ["text.lora_layers=2", "text.bf16=true", "text.checkpointing=false"],
    "all layers (paper), bf16, checkpointed micro-batches": ["text.bf16=true"],
}

CHILD = """
import json, sys, tempfile
from symcere.config import load_config
from symcere.data import Dataset
from symcere.training.run import train
data, device, preset, sets = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
cfg = load_config("symcere", preset=preset, overrides=[*sets, "train.max_epochs=1", f"train.device={device}"])
with tempfile.TemporaryDirectory() as tmp:
    res = train(Dataset.load(data), cfg, tmp + "/run", progress=False)
    log = [json.loads(l) for l in open(tmp + "/run/log.jsonl")]
print(json.dumps({"epoch_seconds": log[0]["seconds"], "eval_seconds": log[0].get("eval_seconds"),
                  "steps": log[0]["step"], "status": res.status}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preset", default="paper", help="the SymCERE preset the variants change (default: paper)")
    ap.add_argument("--variant", nargs="*", default=None, help="NAME=key=value,key=value (replaces the defaults)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "lora.md"))
    args = ap.parse_args()
    variants = VARIANTS
    if args.variant:
        variants = {v.split("=", 1)[0]: v.split("=", 1)[1].split(",") for v in args.variant}
    rows: dict[str, list[dict]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as cache:  # the text caches of this benchmark only
        env = {**os.environ, "SYMCERE_CACHE": cache}
        for _ in range(args.rounds):
            for name, sets in variants.items():
                res = run_child([sys.executable, "-c", CHILD, args.data, args.device, args.preset, *sets], env=env)
                rows[name].append(res)
                print(name, res, flush=True)
    table = ["| variant | epoch s | process s | peak RSS MB | steps |", "|---|---|---|---|---|"]
    for name, rs in rows.items():
        table.append(f"| {name} | {stats([r['epoch_seconds'] for r in rs], 1)} | "
                     f"{stats([r['process_seconds'] for r in rs], 1)} | {stats([r['peak_rss_mb'] for r in rs], 0)} | "
                     f"{rs[0]['steps']} |")
    what = {
        "paper": "(MiniLM, concat item text, batch 1024, alpha 0.5: every step encodes each distinct item's text and "
                 "one masked view)",
        "default": "(MiniLM, each item's text the mean of its training reviews' embeddings, batch 2048, alpha 0: "
                   "every step encodes every training review of the batch's distinct items)",
    }.get(args.preset, "")
    body = "\n".join(table) + f"\n\nMedian (min-max) over {args.rounds} rounds, `--preset {args.preset}` {what}, " \
        f"one epoch on {args.data}"
    write_results(Path(args.out), "LoRA fine-tuning of the text encoder on a CPU", [("Epoch", body)],
                  {"args": vars(args), "variants": variants, "rounds": rows})
    print(json.dumps({k: [r["epoch_seconds"] for r in v] for k, v in rows.items()}))


if __name__ == "__main__":
    main()
