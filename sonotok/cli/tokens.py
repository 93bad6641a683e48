"""``sonotok tokenize`` (audio -> codes) and ``sonotok decode`` (codes -> audio)."""

from __future__ import annotations

import argparse
import json
import os
import sys


def _load(args):
    """The model on ``--device`` (an error, not a silent CPU run, when it cannot get there)."""
    import torch

    import sonotok
    from sonotok.errors import SonotokError

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        device = torch.device(args.device)
    except (RuntimeError, ValueError) as e:
        raise SonotokError(f"--device {args.device}: not a torch device ({e})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SonotokError(f"--device {args.device}: no CUDA device is available here (torch {torch.__version__}, "
                           f"CUDA build {torch.version.cuda}); use --device cpu")
    codec = sonotok.load(args.model, map_location=device)
    got = {t.device.type for t in codec.parameters()}
    if got and got != {device.type}:
        raise SonotokError(f"{args.model}: the model is on {sorted(got)} although --device {args.device} was asked")
    return codec


def _run(fn, args) -> int:
    from sonotok.errors import SonotokError

    try:
        return fn(args)
    except SonotokError as e:
        print(f"sonotok {getattr(args, 'command', None) or 'tokenize'}: error: {e}", file=sys.stderr)
        return 2


def _tokenize(args) -> int:
    return _run(_tokenize_run, args)


def _tokenize_run(args) -> int:
    from sonotok.tokenizer import format_summary, tokenize

    codec = _load(args)
    if args.batch_size is None:
        args.batch_size = 1 if str(args.device).startswith("cpu") else 8
    if args.distributed:
        from sonotok.tokenizer.distributed import tokenize_distributed

        summary = tokenize_distributed(
            codec, args.inputs, args.out, num_codebooks=args.num_codebooks, batch_size=args.batch_size,
            channels=args.channels, accelerator=args.accelerator, devices=args.devices, num_nodes=args.num_nodes,
            strategy=args.strategy, verify=args.verify, lock_timeout=args.wait,
        )
    else:
        summary = tokenize(
            codec, args.inputs, args.out, num_codebooks=args.num_codebooks, batch_size=args.batch_size,
            fmt=args.format, shard_size=args.shard_size, channels=args.channels,
            long_file_seconds=args.long_file_seconds, chunk_seconds=args.chunk_seconds,
            progress=not args.no_progress, verify=args.verify, lock_timeout=args.wait,
        )
    print(format_summary(summary, "tokenized"), file=sys.stderr)
    if args.summary_json:
        print(json.dumps(summary.as_dict()))
    return 0 if summary.ok else 1


def _decode(args) -> int:
    return _run(_decode_run, args)


def _decode_run(args) -> int:
    from sonotok.tokenizer import decode_files, format_summary

    codec = _load(args)
    summary = decode_files(codec, args.inputs, args.out, check_model_id=not args.ignore_model_id,
                           progress=not args.no_progress)
    print(format_summary(summary, "decoded"), file=sys.stderr)
    return 0 if summary.ok else 1


def add_parser(subparsers) -> None:
    """Register ``tokenize`` and ``decode``."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "tokenize", help="encode audio files, folders or JSONL manifests to discrete codes",
        formatter_class=fmt,
        description="Encode audio to codes. Outputs mirror the inputs' relative paths under --out "
        "(.npy int16/int32 + .json metadata, or .safetensors shards) with manifest.jsonl listing what was "
        "written and what failed and why. Re-running the same command resumes (finished files whose size and "
        "time match the manifest are skipped; --verify sha256 re-hashes them). One run at a time per --out: a "
        "second one refuses (exit 2) or, with --wait, waits. Encoding is deterministic on CPU and CUDA (no TF32), "
        "and the manifest records the device and precision of every file. Exit status 1 when any file failed.",
        epilog="examples:\n  sonotok tokenize --model runs/tiny/model data/corpus/train.jsonl --out codes/\n"
        "  sonotok tokenize --model default audio/ --out codes/ --num-codebooks 4 --format safetensors",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders (recursive) or .jsonl manifests")
    p.add_argument("--model", "-m", required=True, help="model directory, shipped name or sonotok .ckpt")
    p.add_argument("--out", "-o", required=True, help="output folder")
    p.add_argument("--num-codebooks", "-k", type=int, default=None, help="write only the first K codebooks")
    p.add_argument("--batch-size", "-b", type=int, default=None,
                   help="files per padded batch (default 8 on GPU, 1 on CPU where wide batches measured slower: "
                   "bench/tokenize.py)")
    p.add_argument("--format", choices=["npy", "safetensors"], default="npy")
    p.add_argument("--shard-size", type=int, default=1000, help="items per .safetensors shard")
    p.add_argument("--channels", choices=["downmix", "reject", "first"], default="downmix",
                   help="multichannel input policy (default downmix)")
    p.add_argument("--long-file-seconds", type=float, default=60.0,
                   help="stream files longer than this in bounded memory (default 60)")
    p.add_argument("--chunk-seconds", type=float, default=10.0, help="block size for long files")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (the model is loaded there)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--verify", choices=["stamp", "sha256"], default="stamp",
                   help="how finished files are checked on resume: size + modification time (default) or sha256")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another run on the same --out to finish (default: refuse at once)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--summary-json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--distributed", action="store_true", help="run on Lightning (Trainer.predict, DDP)")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="auto")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--strategy", default="auto")
    p.set_defaults(func=_tokenize)

    d = subparsers.add_parser(
        "decode", help="decode code files (.npy / .safetensors / folders) back to audio", formatter_class=fmt,
        description="Decode code files written by `sonotok tokenize` to wav files mirroring their names. A "
        "file that does not fit the model (codebooks, index range, dtype, model id) is reported with its "
        "reason in decode_manifest.jsonl; exit status 1 when any file failed.",
    )
    d.add_argument("inputs", nargs="+", metavar="CODES", help=".npy code files, .safetensors shards or folders")
    d.add_argument("--model", "-m", required=True)
    d.add_argument("--out", "-o", required=True)
    d.add_argument("--ignore-model-id", action="store_true", help="decode codes written by a different model id")
    d.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (the model is loaded there)")
    d.add_argument("--threads", type=int, default=None)
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=_decode)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from sonotok.cli import main

    sys.exit(main(["tokenize", *sys.argv[1:]]))
