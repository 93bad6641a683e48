"""``sonotok prepare <dataset> --root DIR --out DIR``: manifests from a user-downloaded dataset copy."""

from __future__ import annotations

import argparse
import sys


def _run(args: argparse.Namespace) -> int:
    from sonotok.data.prepare import DatasetLayoutError, prepare

    kwargs = {"relative": args.relative}
    if args.dataset in ("libritts", "librispeech") and args.subsets:
        kwargs["subsets"] = args.subsets.split(",")
    if args.dataset == "vctk":
        kwargs["mic"] = args.mic
        if args.test_speakers:
            kwargs["test_speakers"] = args.test_speakers.split(",")
        if args.valid_speakers:
            kwargs["valid_speakers"] = args.valid_speakers.split(",")
    if args.dataset == "libri2mix":
        kwargs.update(sample_rate=args.rate, mode=args.mode, mixture=args.mixture)
        if args.subsets:
            kwargs["splits"] = args.subsets.split(",")
    try:
        counts = prepare(args.dataset, args.root, args.out, **kwargs)
    except DatasetLayoutError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for split, n in counts.items():
        print(f"{args.out}/{split}.jsonl: {n} rows")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "prepare",
        help="build JSONL manifests from a downloaded LibriTTS / LibriSpeech / VCTK / Libri2Mix copy",
        description="Build <out>/{train,valid,test}.jsonl from a local dataset copy (nothing is downloaded). "
        "Layouts: see sonotok/recipes.py and recipes/*/README.md.",
    )
    p.add_argument("dataset", choices=["libritts", "librispeech", "vctk", "libri2mix"])
    p.add_argument("--root", required=True, help="the dataset folder (e.g. /data/LibriTTS) or its parent")
    p.add_argument("--out", required=True, help="output folder for the manifests")
    p.add_argument("--subsets", default=None,
                   help="comma list of subsets (LibriTTS/LibriSpeech: train-clean-100,dev-clean,...; "
                   "Libri2Mix: train-360,train-100,dev,test); default: all present")
    p.add_argument("--relative", action="store_true", help="write paths relative to --out")
    p.add_argument("--mic", default="mic1", choices=["mic1", "mic2"], help="VCTK microphone")
    p.add_argument("--test-speakers", default=None, help="VCTK held-out test speakers (comma list)")
    p.add_argument("--valid-speakers", default=None, help="VCTK held-out valid speakers (comma list)")
    p.add_argument("--rate", default="8k", choices=["8k", "16k"], help="Libri2Mix sample rate folder")
    p.add_argument("--mode", default="min", choices=["min", "max"], help="Libri2Mix mode folder")
    p.add_argument("--mixture", default="clean", choices=["clean", "both"],
                   help="Libri2Mix mixtures: mix_clean or mix_both (+ noise column)")
    p.set_defaults(func=_run)
    return p
