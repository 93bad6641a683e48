"""Learning curves of the naive SEANet recipe vs the fast default (issue 8), in one run.

Each design is built from the Hydra config tree (the same configs ``train.py`` uses), trained with a plain
loop for a fixed budget of optimizer steps and/or minutes of training time, and evaluated on held-out
speakers (files of the corpus's test split, spread over its speakers) at regular points with
``sonotok.evaluation.codec.evaluate``. Evaluation time is excluded from the training clock. Writes
``bench/results/fast_default.json`` and ``bench/results/fast_default.png`` (PESQ-WB, STOI and mel distance
vs steps and vs minutes).

    OMP_WAIT_POLICY=PASSIVE nice -n 5 .venv/bin/python bench/fast_default.py --minutes 15

On a shared machine wall-clock minutes are noisy: compare by steps, and measure steps/s alone
(``--time-only``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import build, endless_batches, manifest_files, train_step  # noqa: E402

# The naive recipe of issue 8: causal SEANet (strides 2-4-5-8), RVQ 8 x 1024 (k-means, EMA 0.99,
# dead-code threshold 2), multi-resolution mel + log-magnitude STFT losses, batch 8 x 1 s, AdamW 1e-3.
NAIVE = [
    "encoder=seanet",
    "decoder=seanet",
    "quantizer=rvq",
    "discriminator=none",
    "loss=default",
    "name=naive_seanet",
    "latent_dim=64",
    "encoder.n_filters=16",
    "decoder.n_filters=16",
    "encoder.dilations=[1,3]",
    "decoder.dilations=[1,3]",
    "quantizer.threshold_ema_dead_code=2",
    "quantizer.quantizer_dropout=false",
    "loss.weights={rec/mel:15.0,rec/stft:1.0,rec/wave:0.0,rec/loudness:0.0,vq/commit:1.0,adv/gen:0,adv/feat:0,adv/disc:0}",
    "optim.generator.lr=1e-3",
    "data.batch_size=8",
    "data.segment_seconds=1.0",
]
DESIGNS = {
    "naive_seanet": NAIVE,
    "tiny": ["experiment=tiny"],
    "fast_16k": ["experiment=fast_16k"],
}


def score(codec, files: list[str]) -> dict:
    from sonotok.evaluation.codec import evaluate

    codec.eval()
    with torch.no_grad():
        res = evaluate(codec, files, verbose=False)
    codec.train()
    s = res["summary"]
    return {k: float(s[k]) for k in ("pesq_wb", "stoi", "mel_distance", "si_sdr") if k in s}


def run_design(name: str, overrides: list[str], args, files: list[str], save=lambda r: None) -> dict:
    torch.manual_seed(0)
    cfg, module, dm = build(overrides)
    codec = module.codec
    (opt,), (sched,) = module.configure_optimizers()
    n_params = sum(p.numel() for p in codec.parameters())
    kbps = codec.bitrate() / 1000.0
    print(f"[{name}] {n_params / 1e6:.2f} M params, {kbps:.2f} kbps, {codec.frame_rate:g} Hz", flush=True)
    budget_s = args.minutes * 60.0
    points = []
    next_eval = 0.0 if args.eval_at_zero else args.eval_every * 60.0
    train_s, step = 0.0, 0
    loader = endless_batches(dm)
    codec.train()
    record = {"overrides": overrides, "params": n_params, "kbps": kbps, "frame_rate": codec.frame_rate,
              "steps": 0, "train_minutes": 0.0, "steps_per_s": 0.0, "curve": points}
    while True:
        done = step >= args.max_steps or train_s >= budget_s
        at_step = args.eval_every_steps and step > 0 and step % args.eval_every_steps == 0
        if train_s >= next_eval or done or at_step:
            q = score(codec, files)
            q.update(step=step, minutes=train_s / 60.0)
            points.append(q)
            print(f"[{name}] step {step} {train_s / 60:.2f} min: " + ", ".join(f"{k}={v:.3f}" for k, v in q.items()), flush=True)
            record.update(steps=step, train_minutes=train_s / 60.0, steps_per_s=step / max(train_s, 1e-9))
            save(record)
            while next_eval <= train_s:
                next_eval += args.eval_every * 60.0
        if done:
            break
        batch = next(loader)
        t0 = time.perf_counter()
        _, total = train_step(module, codec, opt, sched, batch)
        step += 1
        train_s += time.perf_counter() - t0
        if step % 50 == 0:
            print(f"[{name}] step {step} loss {float(total.detach()):.3f} {step / train_s:.2f} steps/s", flush=True)
    if args.save_dir:
        from omegaconf import OmegaConf

        from sonotok.model_io import save_model

        save_model(codec.eval(), Path(args.save_dir) / name, OmegaConf.to_container(cfg.codec, resolve=True),
                   {"steps": step, "train_minutes": train_s / 60.0})
    return record


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("pesq_wb", "PESQ-WB"), ("stoi", "STOI"), ("mel_distance", "mel distance")]
    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    for name, r in results["designs"].items():
        c = r["curve"]
        for j, (k, label) in enumerate(keys):
            axes[0, j].plot([p["minutes"] for p in c], [p[k] for p in c], "o-", label=f"{name} ({r['kbps']:.2f} kbps)")
            axes[1, j].plot([p["step"] for p in c], [p[k] for p in c], "o-", label=name)
            axes[0, j].set_xlabel("training minutes (2 CPU threads, shared machine)")
            axes[1, j].set_xlabel("optimizer steps")
            axes[0, j].set_ylabel(label)
            axes[1, j].set_ylabel(label)
    for ax, tgt in ((axes[0, 0], 2.0), (axes[1, 0], 2.0), (axes[0, 1], 0.85), (axes[1, 1], 0.85)):
        ax.axhline(tgt, color="gray", ls="--", lw=0.8)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("issue 8: naive SEANet vs fast default, held-out speakers")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--designs", default="naive_seanet,tiny", help=f"comma list of {sorted(DESIGNS)}")
    p.add_argument("--minutes", type=float, default=15.0, help="training-time budget per design")
    p.add_argument("--max-steps", type=int, default=10**9, help="step budget per design")
    p.add_argument("--eval-every", type=float, default=2.5, help="minutes of training between evaluations")
    p.add_argument("--eval-every-steps", type=int, default=0, help="also evaluate every N steps")
    p.add_argument("--eval-at-zero", action="store_true")
    p.add_argument("--per-speaker", type=int, default=3, help="held-out files per test speaker")
    p.add_argument("--corpus", default=os.environ.get("SONOTOK_CORPUS", str(ROOT / "data/corpus")))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--override", action="append", default=[], help="NAME:hydra.override (repeatable)")
    p.add_argument("--save-dir", default=None, help="write each trained model directory here")
    p.add_argument("--out", default=str(ROOT / "bench/results/fast_default.json"))
    p.add_argument("--merge", nargs="+", default=None,
                   help="instead of training, merge these result files (designs run as parallel processes) into --out")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.merge:
        merged: dict = {}
        for f in args.merge:
            r = json.loads(Path(f).read_text())
            designs = r.pop("designs")
            merged = {**r, **merged, "designs": {**merged.get("designs", {}), **designs}}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(merged, indent=1))
        plot(merged, out.with_suffix(".png"))
        print_table(merged)
        return 0
    torch.set_num_threads(args.threads)
    files = manifest_files(Path(args.corpus) / "test.jsonl", args.per_speaker)
    print(f"evaluating on {len(files)} held-out files", flush=True)
    extra: dict[str, list[str]] = {}
    for o in args.override:
        n, _, ov = o.partition(":")
        extra.setdefault(n, []).append(ov)
    results = {"eval_files": [os.path.relpath(f, args.corpus) for f in files], "threads": args.threads,
               "minutes_budget": args.minutes, "max_steps": args.max_steps, "designs": {}}
    for spec in args.designs.split(","):
        name, _, base = spec.partition("=")
        ov = list(DESIGNS[base or name]) + extra.get(name, [])

        def save(record, name=name):
            results["designs"][name] = record
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=1))
            plot(results, out.with_suffix(".png"))

        save(run_design(name, ov, args, files, save))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    print_table(results)
    return 0


def print_table(results: dict) -> None:
    print(f"{'design':14s} {'steps':>6s} {'min':>6s} {'PESQ-WB':>8s} {'STOI':>6s} {'mel':>6s} {'kbps':>5s}")
    for name, r in results["designs"].items():
        last = r["curve"][-1]
        print(f"{name:14s} {last['step']:6d} {last['minutes']:6.1f} {last['pesq_wb']:8.3f} {last['stoi']:6.3f} "
              f"{last['mel_distance']:6.3f} {r['kbps']:5.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
