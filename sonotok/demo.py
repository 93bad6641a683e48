"""``sonotok demo``: corpus -> CPU training of ``experiment=tiny`` -> tokenize + reconstruct held-out
speakers -> metrics next to the shipped pretrained default.

This is what ``make demo`` runs. Everything goes through the same public pieces a user would call
(``sonotok corpus build``, ``python train.py experiment=tiny``, ``sonotok tokenize``/``decode``,
``sonotok.evaluate``), so the demo is also an end-to-end check of the toolkit.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

# The issue-8 target for the CPU default.
TARGET_PESQ = 2.0
TARGET_STOI = 0.85
TARGET_KBPS = 4.0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="build the corpus, train the tiny default on the CPU, tokenize/reconstruct held-out speakers, "
        "print metrics next to the shipped pretrained model",
    )
    p.add_argument("--corpus", default="data/corpus", help="corpus folder (built if missing)")
    p.add_argument("--minutes", type=float, default=15.0, help="training time budget (default 15)")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--experiment", default="tiny", help="training preset (default tiny)")
    p.add_argument("--eval-files", type=int, default=20, help="held-out test files to score (default 20)")
    p.add_argument("--pretrained", default="default", help="shipped model to compare with ('' to skip)")
    p.add_argument("--processes", type=int, default=2,
                   help="data-parallel training processes, one CPU thread each (trainer=cpu_ddp; default 2, "
                   "one per core of a 2-core machine); 1 trains in this process on --threads threads")
    p.add_argument("--threads", type=int, default=2, help="threads for a single training process and for scoring")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for training")
    p.set_defaults(func=run)


def _time_limit(minutes: float) -> str:
    total = max(1, int(round(minutes * 60)))
    return f"00:{total // 3600:02d}:{(total % 3600) // 60:02d}:{total % 60:02d}"


def _held_out_files(corpus: Path, n: int) -> list[Path]:
    from sonotok.data.corpus import read_manifest

    rows = read_manifest(corpus / "test.jsonl")
    # spread the picks over speakers and lengths deterministically
    rows = sorted(rows, key=lambda r: (r["speaker"], r["path"]))
    step = max(1, len(rows) // max(1, n))
    picked = rows[::step][:n]
    return [(corpus / r["path"]).resolve() for r in picked]


def run(args: argparse.Namespace) -> int:
    import torch

    from sonotok import load
    from sonotok.cli import main as cli_main
    from sonotok.evaluate import evaluate, format_comparison
    from sonotok.training.train import compose_config, run_training

    torch.set_num_threads(args.threads)
    corpus = Path(args.corpus)
    out = Path(args.out)
    if not (corpus / "train.jsonl").is_file():
        print(f"[demo] building the corpus in {corpus}")
        from sonotok.data.corpus import build_corpus

        build_corpus(corpus)

    if args.processes > 1:
        parallel = ["trainer=cpu_ddp", f"trainer.devices={args.processes}", "threads=1"]
        how = f"{args.processes} data-parallel processes x 1 CPU thread"
    else:
        parallel = [f"threads={args.threads}"]
        how = f"{args.threads} CPU threads"
    print(f"[demo] training experiment={args.experiment} for {args.minutes:g} minutes on {how}")
    overrides = [
        f"experiment={args.experiment}",
        f"trainer.max_time={_time_limit(args.minutes)}",
        f"out_dir={out / 'train'}",
        f"data.train={corpus.resolve() / 'train.jsonl'}",
        f"data.valid={corpus.resolve() / 'valid.jsonl'}",
        *parallel,
        "resume=null",
        *args.overrides,
    ]
    t0 = time.perf_counter()
    summary = run_training(compose_config(overrides))
    train_minutes = (time.perf_counter() - t0) / 60
    torch.set_num_threads(args.threads)
    model_dir = Path(summary["model_dir"])
    print(f"[demo] trained {summary['steps']} steps in {train_minutes:.1f} min -> {model_dir}")

    files = _held_out_files(corpus, args.eval_files)
    tokens, recon = out / "tokens", out / "reconstructed"
    print(f"[demo] tokenizing {len(files)} held-out files -> {tokens}")
    rc = cli_main(["tokenize", "--model", str(model_dir), *map(str, files), "--out", str(tokens)])
    if rc != 0:
        print(f"[demo] tokenize exited with {rc}")
    code_files = sorted(p for p in tokens.rglob("*.npy"))
    if code_files:
        rc2 = cli_main(["decode", "--model", str(model_dir), *map(str, code_files), "--out", str(recon)])
        if rc2 != 0:
            print(f"[demo] decode exited with {rc2}")

    results = {}
    codec = load(model_dir)
    results[f"{args.experiment} ({train_minutes:.0f} min, {summary['steps']} steps)"] = evaluate(
        codec, [str(f) for f in files], out_dir=out / "eval", verbose=False
    )
    if args.pretrained:
        try:
            pre = load(args.pretrained)
        except Exception as e:  # noqa: BLE001 - the comparison is optional
            print(f"[demo] no pretrained model to compare with ({e})")
        else:
            results[f"pretrained '{args.pretrained}'"] = evaluate(
                pre, [str(f) for f in files], out_dir=out / "eval_pretrained", verbose=False
            )

    print()
    print(f"Held-out speakers, {len(files)} files from {corpus / 'test.jsonl'}")
    print(format_comparison(results))
    print()
    for name, res in results.items():
        s = res["summary"]
        ok_p = s["pesq_wb"] >= TARGET_PESQ
        ok_s = s["stoi"] >= TARGET_STOI
        ok_b = s["bitrate_kbps"] <= TARGET_KBPS + 1e-9
        verdict = "MET" if (ok_p and ok_s and ok_b) else "NOT MET"
        print(
            f"target PESQ-WB >= {TARGET_PESQ}, STOI >= {TARGET_STOI}, <= {TARGET_KBPS:g} kbps: {verdict} "
            f"for {name} (PESQ-WB {s['pesq_wb']:.2f}, STOI {s['stoi']:.3f}, {s['bitrate_kbps']:.2f} kbps)"
        )
    (out / "demo_results.json").write_text(
        json.dumps({k: v["summary"] for k, v in results.items()}, indent=2, default=float) + "\n"
    )
    print(f"\n[demo] reconstructions in {recon}, codes in {tokens}, metrics in {out / 'demo_results.json'}")
    return 0
