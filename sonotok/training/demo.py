"""``sonotok demo``: corpus -> CPU training of ``experiment=tiny`` -> tokenize + reconstruct held-out
speakers -> metrics next to the shipped pretrained default.

This is what ``make demo`` runs. Everything goes through the same public pieces a user would call
(``sonotok corpus build``, ``python train.py experiment=tiny``, ``sonotok tokenize``/``decode``,
``sonotok.evaluation.codec``), so the demo is also an end-to-end check of the toolkit.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

# The issue-8 target for the CPU default.
TARGET_PESQ = 2.0
TARGET_STOI = 0.85
TARGET_KBPS = 4.0
# Classic codecs printed next to the models (issue 15): what a user would pick instead.
CLASSIC_BASELINES = ("opus:6", "codec2:3200")


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


def run_demo(corpus: str | Path = "data/corpus", minutes: float = 15.0, out: str | Path = "runs/demo",
             experiment: str = "tiny", eval_files: int = 20, pretrained: str = "default", processes: int = 2,
             threads: int = 2, overrides: Sequence[str] = ()) -> dict:
    """Build the corpus if missing, train ``experiment`` for ``minutes``, tokenize + decode held-out files,
    score them next to the shipped ``pretrained`` model and print the comparison.

    Returns:
        ``{name: summary}`` of the evaluated models (written to ``<out>/demo_results.json``) and of the
        classic codecs on the same files (``<out>/demo_baselines.json``).
    """
    import torch

    from sonotok.errors import SonotokError
    from sonotok.evaluation.classic import evaluate_classic, parse_classic, require_tools
    from sonotok.evaluation.codec import evaluate, format_comparison
    from sonotok.model_io import load_model as load
    from sonotok.tokenizer import decode_files, format_summary, tokenize
    from sonotok.training.train import compose_config, run_training

    torch.set_num_threads(threads)
    corpus = Path(corpus)
    out = Path(out)
    if not (corpus / "train.jsonl").is_file():
        print(f"[demo] building the corpus in {corpus}")
        from sonotok.data.corpus import build_corpus

        build_corpus(corpus)

    if processes > 1:
        parallel = ["trainer=cpu_ddp", f"trainer.devices={processes}", "threads=1"]
        how = f"{processes} data-parallel processes x 1 CPU thread"
    else:
        parallel = [f"threads={threads}"]
        how = f"{threads} CPU threads"
    print(f"[demo] training experiment={experiment} for {minutes:g} minutes on {how}")
    overrides = [
        f"experiment={experiment}",
        f"trainer.max_time={_time_limit(minutes)}",
        f"out_dir={out / 'train'}",
        f"data.train={corpus.resolve() / 'train.jsonl'}",
        f"data.valid={corpus.resolve() / 'valid.jsonl'}",
        *parallel,
        "resume=null",
        *overrides,
    ]
    t0 = time.perf_counter()
    summary = run_training(compose_config(overrides))
    train_minutes = (time.perf_counter() - t0) / 60
    torch.set_num_threads(threads)
    model_dir = Path(summary["model_dir"])
    print(f"[demo] trained {summary['steps']} steps in {train_minutes:.1f} min -> {model_dir}")

    files = _held_out_files(corpus, eval_files)
    tokens, recon = out / "tokens", out / "reconstructed"
    print(f"[demo] tokenizing {len(files)} held-out files -> {tokens}")
    codec = load(model_dir)
    print(format_summary(tokenize(codec, files, tokens, batch_size=1, progress=False)))
    code_files = sorted(p for p in tokens.rglob("*.npy"))
    if code_files:
        print(format_summary(decode_files(codec, code_files, recon, progress=False), "decoded"))

    results = {}
    results[f"{experiment} ({train_minutes:.0f} min, {summary['steps']} steps)"] = evaluate(
        codec, [str(f) for f in files], out_dir=out / "eval", verbose=False
    )
    if pretrained:
        try:
            pre = load(pretrained)
        except Exception as e:  # noqa: BLE001 - the comparison is optional
            print(f"[demo] no pretrained model to compare with ({e})")
        else:
            results[f"pretrained '{pretrained}'"] = evaluate(
                pre, [str(f) for f in files], out_dir=out / "eval_pretrained", verbose=False
            )

    ours = list(results)
    try:
        require_tools()
    except SonotokError as e:
        print(f"[demo] no classic-codec rows: {e}")
    else:
        for spec in CLASSIC_BASELINES:
            c = parse_classic(spec)
            results[c.name] = evaluate_classic(c, files, codec.sample_rate)

    print()
    print(f"Held-out speakers, {len(files)} files from {corpus / 'test.jsonl'}")
    print(format_comparison(results))
    print()
    for name in ours:
        s = results[name]["summary"]
        ok_p = s["pesq_wb"] >= TARGET_PESQ
        ok_s = s["stoi"] >= TARGET_STOI
        ok_b = s["bitrate_kbps"] <= TARGET_KBPS + 1e-9
        verdict = "MET" if (ok_p and ok_s and ok_b) else "NOT MET"
        print(
            f"target PESQ-WB >= {TARGET_PESQ}, STOI >= {TARGET_STOI}, <= {TARGET_KBPS:g} kbps: {verdict} "
            f"for {name} (PESQ-WB {s['pesq_wb']:.2f}, STOI {s['stoi']:.3f}, {s['bitrate_kbps']:.2f} kbps)"
        )
    if "Codec2 3200" in results:
        c2 = results["Codec2 3200"]["summary"]["pesq_wb"]
        for name in ours:
            p = results[name]["summary"]["pesq_wb"]
            print(f"target PESQ-WB above Codec2 3.2 kbps ({c2:.2f}): {'MET' if p > c2 else 'NOT MET'} for {name} "
                  f"({p:.2f})")
    summaries = {k: v["summary"] for k, v in results.items()}
    (out / "demo_results.json").write_text(json.dumps({k: summaries[k] for k in ours}, indent=2, default=float) + "\n")
    (out / "demo_baselines.json").write_text(
        json.dumps({k: v for k, v in summaries.items() if k not in ours}, indent=2, default=float) + "\n")
    print(f"\n[demo] reconstructions in {recon}, codes in {tokens}, metrics in {out / 'demo_results.json'} "
          f"(classic codecs: {out / 'demo_baselines.json'})")
    return summaries
