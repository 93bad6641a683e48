"""``sonotok separate`` (mixtures -> one file per source) and ``sonotok separation-eval``.

* ``sonotok separate --model M INPUT... --out DIR``: each input (an audio file, or a folder searched
  recursively) is separated and written as ``DIR/<stem>_s1.wav`` ... ``_sS.wav`` at the input's sample
  rate (atomic writes). Any channel count and rate is accepted (downmixed, resampled); inputs longer than
  ``--chunk-seconds`` run window by window (bounded memory). A bad input prints one ``error: <file>:
  <reason>`` line and the batch continues (a silent input is a ``warning:``); the exit status is 1 when
  any input failed, 2 when the model cannot be loaded. ``--model default`` is the shipped separator.
* ``sonotok separation-eval --model M --data test.jsonl``: SI-SNRi / SDRi of the model and of the
  ideal binary / ratio / Wiener-like masks on a fixed, seeded set of mixtures of the manifest's
  speakers (or a Libri2Mix / WSJ0-2mix style folder), as a markdown table (+ JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List


def _expand(inputs: List[str]) -> List[Path]:
    from sonotok.data.sources import list_audio_files

    out: List[Path] = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            files = list_audio_files(p)
            out.extend(files if files else [p])  # an empty folder is reported as an error below
        else:
            out.append(p)
    return out


def _load_separator(name: str, device: str):
    from sonotok.model_io import load_separator

    return load_separator(name, map_location=device)


def cmd_separate(args: argparse.Namespace) -> int:
    import torch

    from sonotok.errors import SonotokError
    from sonotok.models.separate import separate_file

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = _load_separator(args.model, args.device)
    except SonotokError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    failed = 0
    files = _expand(args.inputs)
    for path in files:
        try:
            if path.is_dir():
                raise SonotokError(f"{path}: folder holds no audio files (no file with an extension of sonotok.data.audio.AUDIO_EXTENSIONS)")
            result = separate_file(model, path, out_dir, args.format, args.rate, args.normalize, args.device,
                                   chunk_seconds=args.chunk_seconds or None)
            for w in result.warnings:
                print(f"warning: {w}", file=sys.stderr)
            if not args.quiet:
                print(f"{path} -> {', '.join(map(str, result.paths))}")
        except Exception as e:  # noqa: BLE001 - one bad input must not stop the batch; reported, exit 1
            failed += 1
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if not isinstance(e, (SonotokError, ValueError, RuntimeError)):
                msg = f"{type(e).__name__}: {msg}"
            print(f"error: {msg}" if str(path) in msg else f"error: {path}: {msg}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(files)} input(s) failed", file=sys.stderr)
    return 1 if failed else 0


def cmd_separation_eval(args: argparse.Namespace) -> int:
    import torch

    from sonotok.data.mixtures import MixtureFolderDataset, fixed_test_set
    from sonotok.errors import SonotokError
    from sonotok.evaluation.separation import ORACLES, evaluate_separation, format_separation_table

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = None if args.model is None else _load_separator(args.model, args.device)
        sr = model.sample_rate if model is not None else args.sample_rate
        ns = model.num_sources if model is not None else args.num_sources
        if Path(args.data).is_dir():
            ds = MixtureFolderDataset(args.data, ns, sr, max_seconds=args.seconds)
        else:
            ds = fixed_test_set(args.data, args.num_mixtures, ns, sr, args.seconds, seed=args.seed,
                                noise_prob=args.noise_prob)
    except SonotokError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    oracles = [] if args.no_oracles else list(ORACLES)
    res = evaluate_separation(model, ds, max_items=args.num_mixtures, oracles=oracles, device=args.device,
                              sample_rate=sr, out_dir=args.out)
    res["model_id"] = getattr(model, "model_id", None)
    res["data"] = str(args.data)
    print(format_separation_table(res))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("separate", help="separate speech mixtures into one file per source",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders (recursive)")
    p.add_argument("--model", required=True, help="separator model directory, checkpoint or shipped name")
    p.add_argument("--out", required=True, help="output folder (<stem>_s1.wav, <stem>_s2.wav, ...)")
    p.add_argument("--format", default="wav", choices=["wav", "flac"], help="output format")
    p.add_argument("--rate", default="input", choices=["input", "model"],
                   help="write at the input's sample rate (default) or the model's")
    p.add_argument("--normalize", action="store_true", help="scale down sources that would clip")
    p.add_argument("--chunk-seconds", type=float, default=10.0,
                   help="separate long inputs in windows of this many seconds (plus the model's context, "
                        "cross-faded; bounded memory); 0: the whole file at once")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_separate)

    e = subparsers.add_parser("separation-eval", help="SI-SNRi/SDRi of a separator vs ideal-mask oracles",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--model", default=None, help="separator to evaluate (omit for the oracles only)")
    e.add_argument("--data", default="data/corpus/test.jsonl",
                   help="manifest of held-out speakers (fixed seeded mixtures) or a mix/ s1/ s2/ folder")
    e.add_argument("--num-mixtures", type=int, default=50)
    e.add_argument("--seconds", type=float, default=4.0, help="mixture length")
    e.add_argument("--seed", type=int, default=1234)
    e.add_argument("--noise-prob", type=float, default=0.0, help="share of mixtures with music/synthetic noise")
    e.add_argument("--sample-rate", type=int, default=8000, help="rate for oracle-only runs")
    e.add_argument("--num-sources", type=int, default=2, help="sources for oracle-only runs")
    e.add_argument("--no-oracles", action="store_true")
    e.add_argument("--device", default="cpu")
    e.add_argument("--threads", type=int, default=None)
    e.add_argument("--out", default=None, help="folder for separation_metrics.json")
    e.add_argument("--json", default=None, help="write the results to this JSON file")
    e.set_defaults(func=cmd_separation_eval)
    return p
