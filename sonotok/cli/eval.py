"""``sonotok eval``: score a trained codec on a manifest or folder of audio files.

Example::

    sonotok eval --model runs/default --data data/test.jsonl --max-files 50 --out eval/
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``eval`` subcommand on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate a codec (PESQ, STOI, SI-SDR, mel distance, bitrate, codebook usage, speed)",
        description="Encode and decode audio files with a codec and report quality, bitrate, codebook "
        "usage and real-time factors. Writes metrics.json and plots when --out is given.",
    )
    p.add_argument("--model", required=True, help="model directory or name of a shipped model")
    p.add_argument("--data", required=True, nargs="+", help="JSONL manifest(s), folder(s) or audio file(s)")
    p.add_argument("--max-files", type=int, default=None, help="evaluate at most N files")
    p.add_argument("--max-seconds", type=float, default=None, help="crop each file to its first S seconds")
    p.add_argument("--num-codebooks", type=int, default=None, help="decode from the first K codebooks only")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument(
        "--out", default=None, help="folder for metrics.json, spectrograms.png, codebook_usage.png"
    )
    p.add_argument(
        "--save-wavs", type=int, default=0, metavar="N", help="also write the first N reconstructions"
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON instead of tables")
    p.add_argument("--classic", action="append", default=[], metavar="SPEC",
                   help="also score a classic codec on the same files: opus:<kbps> or codec2:<mode> "
                   "(repeatable; e.g. --classic opus:6 --classic codec2:3200; needs opus-tools / codec2)")
    p.add_argument("--html", default=None, metavar="DIR",
                   help="write a listening page (players, spectrograms, metrics per file) to DIR")
    p.add_argument("--html-files", type=int, default=8, metavar="N", help="files on the listening page (default 8)")
    p.add_argument("--perceptual", action="store_true",
                   help="also score DNSMOS P.835 (signal / background / overall MOS of the output) and the speaker "
                   "similarity of output and input (resemblyzer) per file, for the model and every --classic codec")
    p.add_argument("--no-measure", action="store_true",
                   help="skip timing the streaming artifact (TorchScript, CPU, 1 thread: real-time factor and "
                   "concurrent real-time streams at batch 64, a few seconds) in the cost section")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``sonotok eval`` from parsed arguments; returns the process exit code."""
    import torch

    import sonotok
    from sonotok.errors import SonotokError
    from sonotok.evaluation.codec import evaluate, jsonable

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        extra = None
        if args.perceptual:
            from sonotok.metrics.perceptual import PerceptualMetrics

            extra = PerceptualMetrics(threads=torch.get_num_threads())
        codec = sonotok.load(args.model, map_location=device)
        result = evaluate(
            codec,
            args.data,
            max_files=args.max_files,
            max_seconds=args.max_seconds,
            num_codebooks=args.num_codebooks,
            device=device,
            out_dir=args.out,
            save_wavs=args.save_wavs,
            verbose=not args.json,
            extra_metrics=extra,
        )
        files = [f["path"] for f in result["files"]]
        from sonotok.models.cost import codec_cost

        result["cost"] = codec_cost(codec)
        if not args.no_measure:
            from sonotok.export.runtime import measure_codec_speed

            try:
                result["cost"]["measured"] = measure_codec_speed(codec)
            except SonotokError as e:  # no streaming artifact (not causal, offline only): nothing to time
                result["cost"]["measured"] = {"skipped": str(e)}
        if not args.json:
            c = result["cost"]
            print(f"\ncost: {c['parameters'] / 1e6:.2f} M parameters, encoder {c['encoder_mflops_per_s']:.0f} + decoder "
                  f"{c['decoder_mflops_per_s']:.0f} = {c['total_mflops_per_s']:.0f} MFLOP/s, algorithmic latency "
                  f"{c['latency_ms']:.1f} ms")
            m = c.get("measured")
            if m and "skipped" in m:
                print(f"streaming speed not measured: {m['skipped']}")
            elif m:
                from sonotok.cli.export import format_measured

                print(format_measured(m))
        if args.classic:
            from sonotok.evaluation.classic import evaluate_classic, parse_classic
            from sonotok.evaluation.report import format_comparison

            ours = {f"sonotok {Path(args.model).name}": result["summary"]}
            result["classic"] = {}
            for spec in args.classic:
                c = parse_classic(spec)
                result["classic"][c.name] = evaluate_classic(c, files, codec.sample_rate, max_seconds=args.max_seconds,
                                                            extra_metrics=extra)
            if not args.json:
                print("\nClassic codecs on the same files (delay-compensated, payload kbps):")
                print(format_comparison({**ours, **{k: v["summary"] for k, v in result["classic"].items()}},
                                        ["pesq_wb", "stoi", "si_sdr", "mel_distance",
                                         *(extra.keys() if extra is not None else ()), "bitrate_kbps"]))
        if args.html:
            from sonotok.evaluation.listening import write_listening_page

            page = write_listening_page(args.html, files[: args.html_files], {f"sonotok {Path(args.model).name}": codec}, args.classic,
                                        max_seconds=args.max_seconds or 10.0, num_codebooks=args.num_codebooks)
            print(f"listening page: {page}", file=sys.stderr)
    except (SonotokError, ValueError) as err:
        print(f"sonotok eval: error: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(jsonable(result), indent=2))
    return 0
