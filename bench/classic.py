"""sonotok's codecs next to the classic speech codecs a user would pick instead, in one run.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/classic.py --data data/corpus/test.jsonl --per-speaker 3

Opus (6 / 8 / 12 kbps, hard CBR, 20 ms frames) and Codec2 (3200 / 2400 / 1600 / 700C, at 8 kHz) round-trip
the same held-out files as the sonotok models (``--model``, default: the shipped ``default``), scored by the
same metric functions (:mod:`sonotok.evaluation.classic`, :func:`sonotok.evaluation.codec.evaluate`),
delay-compensated, with the payload bitrate; also DNSMOS P.835 overall / signal MOS of the output alone and
the speaker similarity of output and input (:mod:`sonotok.metrics.perceptual`: learned metrics that were not
trained on PESQ; ``--no-perceptual`` skips them). Per-file wins count on how many files a sonotok model scores
at or above a baseline. Writes ``bench/results/classic.json`` and prints markdown tables.
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

CLASSIC = ("opus:6", "opus:8", "opus:12", "codec2:3200", "codec2:2400", "codec2:1600", "codec2:700C")
METRICS = ("pesq_wb", "stoi", "si_sdr", "mel_distance")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/corpus/test.jsonl", help="held-out manifest")
    ap.add_argument("--per-speaker", type=int, default=3, help="files per held-out speaker")
    ap.add_argument("--model", action="append", default=None,
                    help="sonotok model(s) (default: default); MODEL@K decodes from the first K codebooks")
    ap.add_argument("--classic", action="append", default=None, help=f"baselines (default: {' '.join(CLASSIC)})")
    ap.add_argument("--max-seconds", type=float, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-perceptual", action="store_true", help="skip DNSMOS and speaker similarity")
    ap.add_argument("--out", default="bench/results/classic.json")
    args = ap.parse_args(argv)

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import manifest_files

    from sonotok.evaluation.classic import evaluate_classic, parse_classic, require_tools
    from sonotok.evaluation.codec import evaluate
    from sonotok.model_io import load_model

    torch.set_num_threads(args.threads)
    require_tools()
    extra = None
    metrics = METRICS
    if not args.no_perceptual:
        from sonotok.metrics.perceptual import PerceptualMetrics

        extra = PerceptualMetrics(threads=args.threads)
        metrics = METRICS + extra.keys()
    files = manifest_files(Path(args.data), args.per_speaker)
    if not files:
        print(f"error: no files of 2-8 s in {args.data}", file=sys.stderr)
        return 1
    print(f"{len(files)} held-out files from {args.data}", file=sys.stderr)
    results, per_file = {}, {}
    for name in args.model or ["default"]:
        t0 = time.perf_counter()
        path, _, k = name.partition("@")  # MODEL@K: decode from the first K codebooks (variable bitrate)
        codec = load_model(path)
        res = evaluate(codec, files, max_seconds=args.max_seconds, num_codebooks=int(k) if k else None, verbose=False,
                       extra_metrics=extra)
        s = res["summary"]
        results[f"sonotok {name}"] = {**{k: s[k] for k in metrics}, "bitrate_kbps": s["bitrate_kbps"],
                                      "x_realtime": 1.0 / max(s["rtf_encode"] + s["rtf_decode"], 1e-9),
                                      "seconds": time.perf_counter() - t0}
        per_file[f"sonotok {name}"] = {r["path"]: {k: r[k] for k in metrics} for r in res["files"]}
    for spec in args.classic or CLASSIC:
        c = parse_classic(spec)
        res = evaluate_classic(c, files, codec.sample_rate, max_seconds=args.max_seconds, extra_metrics=extra)
        s = res["summary"]
        results[c.name] = {**{k: s[k] for k in metrics}, "bitrate_kbps": s["bitrate_kbps"], "x_realtime": s["x_realtime"]}
        per_file[c.name] = {r["path"]: {k: r[k] for k in metrics} for r in res["files"]}

    perc = extra is not None
    lines = ["| codec | kbps | PESQ-WB | STOI | SI-SDR | mel dist |" + (" DNSMOS OVRL | DNSMOS SIG | spk sim |" if perc else "")
             + " x real time |", "|---|---|---|---|---|---|" + ("---|---|---|" if perc else "") + "---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['bitrate_kbps']:.2f} | {r['pesq_wb']:.2f} | {r['stoi']:.3f} | {r['si_sdr']:.1f} | "
                     f"{r['mel_distance']:.3f} |"
                     + (f" {r['dnsmos_ovrl']:.2f} | {r['dnsmos_sig']:.2f} | {r['spk_sim']:.3f} |" if perc else "")
                     + f" {r['x_realtime']:.0f} |")
    wins = {}
    for model in (n for n in results if n.startswith("sonotok ")):
        for base in (n for n in results if not n.startswith("sonotok ")):
            w = {m: sum(per_file[model][f][m] >= per_file[base][f][m] for f in files)
                 for m in ("pesq_wb", "stoi", *(("dnsmos_ovrl",) if perc else ()))}
            wins[f"{model} vs {base}"] = w
    lines += ["", f"Per-file wins (files where sonotok >= the baseline, of {len(files)}):", "",
              "| comparison | PESQ-WB | STOI |" + (" DNSMOS OVRL |" if perc else ""), "|---|---|---|" + ("---|" if perc else "")]
    lines += [f"| {k} | {v['pesq_wb']} | {v['stoi']} |" + (f" {v['dnsmos_ovrl']} |" if perc else "") for k, v in wins.items()]
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "files": files, "results": results, "wins": wins,
                               "per_file": per_file, "machine": platform.platform(),
                               "load": os.getloadavg()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
