"""Separation benchmark: the tiny Conv-TasNet after a fixed CPU training budget vs ideal-mask oracles,
and the streaming real-time factor of the causal model.

    OMP_WAIT_POLICY=PASSIVE nice -n 5 .venv/bin/python bench/separation.py --minutes 10

1. trains ``separation=convtasnet_tiny`` (2 speakers from ``data/corpus/train.jsonl``) for ``--minutes``
   of wall clock (or ``--max-steps``), from scratch;
2. evaluates it on the fixed, seeded test mixtures of the held-out speakers (``test.jsonl``: june +
   ivrvoice_ru; ``--num-mixtures`` x 4 s at 8 kHz) with SI-SNRi / SDRi, next to the IBM / IRM /
   Wiener-like oracles on the same mixtures;
3. streams the causal twin of the tiny model (cLN, causal convs) and the paper-size causal model in
   10 ms chunks and reports compute time / audio time (RTF < 1 is faster than real time).

Writes ``bench/results/separation.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

# bench/ holds scripts named like standard modules (tokenize.py): keep it off the import path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def streaming_rtf(model, seconds: float, chunk_ms: float = 10.0) -> dict:
    model = model.eval()
    sr = model.sample_rate
    chunk = int(sr * chunk_ms / 1000)
    x = torch.randn(1, 1, int(seconds * sr)) * 0.1
    with torch.no_grad():
        state = model.init_state(1)
        t0 = time.perf_counter()
        for i in range(0, x.shape[-1], chunk):
            _, state = model.step(x[..., i : i + chunk], state)
        stream_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        model(x)
        off_s = time.perf_counter() - t0
        from sonotok.models.separation import StreamingSeparator

        scripted = torch.jit.script(StreamingSeparator(model))
        state = scripted.init_state(1)
        for i in range(0, 10 * chunk, chunk):  # warm-up (TorchScript profiling runs)
            _, state = scripted(x[..., i : i + chunk], state)
        state = scripted.init_state(1)
        t0 = time.perf_counter()
        for i in range(0, x.shape[-1], chunk):
            _, state = scripted(x[..., i : i + chunk], state)
        script_s = time.perf_counter() - t0
    return {"seconds": seconds, "chunk_ms": chunk_ms, "stream_rtf": stream_s / seconds,
            "torchscript_stream_rtf": script_s / seconds,
            "ms_per_chunk": 1000 * stream_s / (x.shape[-1] / chunk), "offline_rtf": off_s / seconds,
            "latency_ms": model.latency_ms, "num_parameters": int(sum(p.numel() for p in model.parameters()))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="training wall-clock budget")
    ap.add_argument("--max-steps", type=int, default=-1, help="training step budget (-1: time only)")
    ap.add_argument("--corpus", default=str(ROOT / "data" / "corpus"))
    ap.add_argument("--num-mixtures", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "bench_separation"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "separation.json"))
    ap.add_argument("--skip-train", action="store_true", help="evaluate the model already in --run-dir")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()

    import sonotok
    from sonotok.data.mixtures import fixed_test_set
    from sonotok.evaluation.separation import evaluate_separation, format_separation_table
    from sonotok.training.train import compose_config, run_training

    corpus = Path(args.corpus)
    summary = {}
    if not args.skip_train:
        mins = args.minutes
        hh, mm, ss = int(mins // 60), int(mins % 60), int(round((mins * 60) % 60))
        cfg = compose_config([
            "separation=convtasnet_tiny", f"out_dir={args.run_dir}", "resume=null", f"threads={args.threads}",
            f"trainer.max_time=00:{hh:02d}:{mm:02d}:{ss:02d}", f"trainer.max_steps={args.max_steps}",
            f"data.train={corpus}/train.jsonl", f"data.valid={corpus}/valid.jsonl", "trainer.enable_progress_bar=false",
            "trainer.val_check_interval=500",
        ], config_name="separate")
        summary = run_training(cfg)
    model = sonotok.load(Path(args.run_dir) / "model")
    meta = getattr(model, "meta", {})
    test = fixed_test_set(corpus / "test.jsonl", args.num_mixtures, model.num_sources, model.sample_rate, 4.0, seed=1234)
    res = evaluate_separation(model, test)

    from hydra.utils import instantiate

    rtf = {}
    for preset, secs in (("convtasnet_tiny", 10.0), ("convtasnet_causal_8k", 1.0)):
        c = compose_config([f"separation={preset}", "separator.masker.norm=cln", "separator.masker.causal=true"],
                           config_name="separate")
        rtf[f"{preset}_causal"] = streaming_rtf(instantiate(c.separator), secs)

    out = {
        "command": "OMP_WAIT_POLICY=PASSIVE nice -n 5 .venv/bin/python bench/separation.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu_threads": args.threads, "load_average_start": load_start, "load_average_end": os.getloadavg(), "platform": platform.platform(), "torch": torch.__version__},
        "training": {"preset": "convtasnet_tiny", "steps": meta.get("train_steps", summary.get("steps")),
                     "minutes": meta.get("train_minutes_last_run", round(summary.get("minutes_this_run", 0), 2)),
                     "budget_minutes": args.minutes, "budget_steps": args.max_steps,
                     "train_speakers": sorted({r.get("speaker") for r in _rows(corpus / "train.jsonl")}),
                     "num_parameters": int(sum(p.numel() for p in model.parameters()))},
        "test": {"manifest": str(corpus / "test.jsonl"), "num_mixtures": args.num_mixtures, "seconds_each": 4.0,
                 "seed": 1234, "speakers": sorted({r.get("speaker") for r in _rows(corpus / "test.jsonl")})},
        "results": res,
        "streaming": rtf,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    t = out["training"]
    print(f"\n## Separation benchmark (tiny Conv-TasNet, {t['steps']} steps in {t['minutes']} min on {args.threads} CPU threads)\n")
    print(format_separation_table(res))
    print("\n| streaming (causal, 10 ms chunks) | params | latency (ms) | stream RTF eager | TorchScript | ms / chunk "
          "| offline RTF |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for k, r in rtf.items():
        print(f"| {k} | {r['num_parameters']:,} | {r['latency_ms']:.1f} | {r['stream_rtf']:.3f} | "
              f"{r['torchscript_stream_rtf']:.3f} | {r['ms_per_chunk']:.2f} | {r['offline_rtf']:.4f} |")
    print(f"\nwritten {args.out}")
    return 0


def _rows(path: Path) -> list:
    from sonotok.data.corpus import read_manifest

    return read_manifest(path)


if __name__ == "__main__":
    sys.exit(main())
