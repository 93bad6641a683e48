"""Quantizer study: the same encoder/decoder trained under the same fixed CPU budget with different quantizers.

Every variant is composed from the Hydra config tree (``sonotok.training.train.compose_config``) with the
same encoder, decoder, losses, optimizer, data and seed, changing only the quantizer group; it is trained
with ``run_training`` for a fixed number of optimizer steps (wall time and time per step are recorded by a
small callback, so Lightning start-up is not counted), then evaluated on held-out speakers of
``data/corpus/test.jsonl`` with ``sonotok.evaluation.codec.evaluate``.

Claims under test:
    * HiFi-Codec (Yang et al., 2023): grouped residual VQ with 4 codebooks matches or beats residual VQ
      with more codebooks.
    * SimVQ (Zhu et al., 2024): a frozen codebook reparameterised by one learned linear layer keeps (nearly)
      all codes in use where a plain VQ with the same large codebook collapses.

Writes ``bench/results/quantizers.json``, ``bench/results/quantizers_table.md`` (the table) and
``bench/results/quantizers.png``. The prose discussion lives in ``bench/results/quantizers.md``.

    OMP_WAIT_POLICY=PASSIVE nice -n 5 .venv/bin/python bench/quantizers.py --steps 400

On a shared machine wall-clock time is noisy: compare quality at equal steps; time per step only within
one run.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds scripts such as tokenize.py that would shadow standard-library modules: drop the script folder
# from the import path (Python puts it first) before importing anything else.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import manifest_files  # noqa: E402

# Shared encoder/decoder: the fast STFT + ConvNeXt design (issue 8, `experiment=fast_16k`: 50 Hz, latent 32)
# with a reconstruction-only objective. vq/commit is on for every variant (FSQ has none).
BASE = [
    "experiment=fast_16k",
    "loss.weights={rec/mel:15.0,rec/stft:1.0,rec/wave:0.0,rec/loudness:0.5,vq/commit:1.0}",
    "data.num_workers=0",
    "trainer.limit_val_batches=0",
    "trainer.enable_progress_bar=false",
    "++trainer.enable_model_summary=false",
    "~logger",
    "callbacks.last=null",
    "callbacks.best=null",
    "callbacks.lr=null",
    "resume=null",
]

# name -> quantizer overrides. Codebook sizes chosen so the 2 kbps variants are directly comparable.
VARIANTS = {
    # SoundStream/EnCodec residual VQ, 1024 codes per level (k-means init, EMA, dead-code expiry)
    "rvq4": ["quantizer=rvq", "~quantizer.levels", "quantizer.num_codebooks=4", "quantizer.codebook_size=1024",
             "quantizer.quantizer_dropout=false", "quantizer.threshold_ema_dead_code=0.02"],
    "rvq8": ["quantizer=rvq", "~quantizer.levels", "quantizer.num_codebooks=8", "quantizer.codebook_size=1024",
             "quantizer.quantizer_dropout=false", "quantizer.threshold_ema_dead_code=0.02"],
    # HiFi-Codec: 2 groups x 2 residual levels = 4 codebooks of 1024
    "grvq4": ["quantizer=grvq", "~quantizer.num_codebooks", "quantizer.groups=2", "quantizer.levels=2", "quantizer.codebook_size=1024",
              "quantizer.threshold_ema_dead_code=0.02"],
    # a single plain VQ with a large codebook: no k-means init, no dead-code expiry (the collapse-prone baseline)
    "vq4096": ["quantizer=rvq", "~quantizer.levels", "quantizer.num_codebooks=1", "quantizer.codebook_size=4096",
               "quantizer.quantizer_dropout=false", "quantizer.kmeans_init=false",
               "quantizer.threshold_ema_dead_code=0"],
    # SimVQ with the same codebook
    "simvq4096": ["quantizer=simvq", "~quantizer.levels", "quantizer.num_codebooks=1", "quantizer.codebook_size=4096"],
    # FSQ 4 groups x [8,5,5,5] (1000 codes each): same 2 kbps as rvq4/grvq4
    "fsq4": ["quantizer=fsq", "quantizer.levels=[8,5,5,5]", "quantizer.num_codebooks=4"],
}


class StepTimer(pl.Callback):
    """Records the wall time of every training batch (forward, backward, optimizer) and writes it as JSON."""

    def __init__(self, out: str):
        self.out = out
        self.times: list[float] = []
        self._t = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter() - self._t)

    def on_train_end(self, trainer, pl_module):
        Path(self.out).parent.mkdir(parents=True, exist_ok=True)
        Path(self.out).write_text(json.dumps(self.times))


def overrides_for(name: str, steps: int, out_root: Path, extra: list[str]) -> list[str]:
    out_dir = out_root / name
    return [*BASE, *VARIANTS[name], f"name=q_{name}", f"out_dir={out_dir}", f"export_dir={out_dir}/model",
            f"trainer.max_steps={steps}", f"schedule.total_steps={steps}",
            f"+callbacks.timer._target_={__name__ if __name__ != '__main__' else 'bench.quantizers'}.StepTimer",
            f"+callbacks.timer.out={out_dir}/step_times.json", *extra]


def run_variant(name: str, args, files: list[str]) -> dict:
    from sonotok.evaluation.codec import evaluate
    from sonotok.model_io import load_model
    from sonotok.training.train import compose_config, run_training

    out_root = Path(args.work_dir)
    ov = overrides_for(name, args.steps, out_root, args.override)
    cfg = compose_config(ov)
    cfg.threads = args.threads
    t0 = time.perf_counter()
    summary = run_training(cfg)
    wall = time.perf_counter() - t0
    times = json.loads((out_root / name / "step_times.json").read_text())
    codec = load_model(str(out_root / name / "model"))
    torch.set_num_threads(args.threads)
    res = evaluate(codec, files, max_seconds=args.max_seconds, verbose=False)
    s = res["summary"]
    n_params = sum(p.numel() for p in codec.parameters())
    warm = times[min(10, len(times) - 1):]  # skip the first steps (k-means init, allocator warm-up)
    row = {
        "variant": name,
        "overrides": VARIANTS[name],
        "params": n_params,
        "num_codebooks": int(codec.num_codebooks),
        "codebook_size": int(codec.codebook_size),
        "bitrate_kbps": float(s["bitrate_kbps"]),
        "entropy_bitrate_kbps": float(s["entropy_bitrate_kbps"]),
        "pesq_wb": float(s["pesq_wb"]),
        "stoi": float(s["stoi"]),
        "mel_distance": float(s["mel_distance"]),
        "si_sdr": float(s.get("si_sdr", float("nan"))),
        "utilization": float(s["mean_utilization"]),
        "perplexity": float(s["mean_perplexity"]),
        "per_codebook": res["codebooks"],
        "steps": int(summary["steps"]),
        "train_wall_s": wall,
        "train_loop_s": float(sum(times)),
        "s_per_step": float(sum(warm) / max(1, len(warm))),
    }
    print(f"[{name}] " + ", ".join(f"{k}={v:.3f}" for k, v in row.items() if isinstance(v, float)), flush=True)
    return row


COLUMNS = [("variant", "variant"), ("bitrate_kbps", "kbps"), ("pesq_wb", "PESQ-WB"), ("stoi", "STOI"),
           ("mel_distance", "mel dist"), ("utilization", "code use"), ("perplexity", "perplexity"),
           ("steps", "steps"), ("s_per_step", "s/step"), ("train_wall_s", "wall s")]


def table(rows: list[dict]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return "nan" if math.isnan(v) else (f"{v:.1f}" if abs(v) >= 100 else f"{v:.3f}")
        return str(v)

    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(r[k]) for k, _ in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["variant"] for r in rows]
    keys = [("pesq_wb", "PESQ-WB (higher better)"), ("stoi", "STOI (higher better)"),
            ("mel_distance", "mel distance (lower better)"), ("utilization", "codebook utilization"),
            ("perplexity", "codebook perplexity"), ("s_per_step", "seconds per step")]
    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    for ax, (k, label) in zip(axes.flat, keys):
        ax.bar(names, [r[k] for r in rows], color="tab:blue")
        ax.set_title(label)
        ax.tick_params(axis="x", rotation=30)
        if k == "perplexity":
            ax.set_yscale("log")
    steps = rows[0]["steps"] if rows else 0
    fig.suptitle(f"quantizers, same STFT-ConvNeXt codec, {steps} steps each, held-out speakers")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def write_outputs(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=lambda x: None))
    out.with_name(out.stem + "_table.md").write_text(table(results["rows"]) + "\n")
    plot(results["rows"], out.with_suffix(".png"))


def merge(paths: list[str], out: Path) -> int:
    """Combine result files of the same budget (e.g. variants run in parallel processes) into ``out``."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    if len({p["steps"] for p in parts}) != 1:
        raise SystemExit(f"cannot merge results of different step budgets: {[p['steps'] for p in parts]}")
    results = {k: v for k, v in parts[0].items() if k != "rows"}
    results["merged_from"] = [os.path.relpath(p, ROOT) for p in paths]
    rows = {r["variant"]: r for part in parts for r in part["rows"]}
    results["rows"] = sorted(rows.values(), key=lambda r: list(VARIANTS).index(r["variant"]))
    write_outputs(results, out)
    print(table(results["rows"]))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {list(VARIANTS)}")
    p.add_argument("--steps", type=int, default=400, help="optimizer steps per variant (the fixed budget)")
    p.add_argument("--per-speaker", type=int, default=6, help="held-out files per test speaker")
    p.add_argument("--max-seconds", type=float, default=4.0, help="crop evaluation files")
    p.add_argument("--corpus", default=os.environ.get("SONOTOK_CORPUS", str(ROOT / "data/corpus")))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--override", action="append", default=[], help="extra Hydra override for every variant")
    p.add_argument("--work-dir", default=str(ROOT / "bench/runs/quantizers"))
    p.add_argument("--out", default=str(ROOT / "bench/results/quantizers.json"))
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="only merge the rows of these result files (runs split over processes) into --out")
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge, Path(args.out))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(args.threads)
    files = manifest_files(Path(args.corpus) / "test.jsonl", args.per_speaker)
    print(f"evaluating on {len(files)} held-out files", flush=True)
    out = Path(args.out)
    results = {"steps": args.steps, "threads": args.threads, "base_overrides": BASE, "extra_overrides": args.override,
               "eval_files": [os.path.relpath(f, args.corpus) for f in files], "max_seconds": args.max_seconds,
               "rows": []}
    if out.is_file():  # keep rows of variants not re-run
        old = json.loads(out.read_text())
        if old.get("steps") == args.steps:
            results["rows"] = [r for r in old.get("rows", []) if r["variant"] not in args.variants.split(",")]
    for name in args.variants.split(","):
        results["rows"].append(run_variant(name, args, files))
        results["rows"].sort(key=lambda r: list(VARIANTS).index(r["variant"]))
        write_outputs(results, out)
    print(table(results["rows"]))
    print(f"wrote {out}, {out.with_name(out.stem + '_table.md')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
