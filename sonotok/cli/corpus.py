"""``sonotok corpus {build,stats,info,mixtures}``: argument parsing only; the work is in
:mod:`sonotok.data.corpus`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["add_parser"]


def _split_list(s: str | None) -> list[str]:
    return [x.strip() for x in (s or "").split(",") if x.strip()]


def _cmd_build(args: argparse.Namespace) -> int:
    from sonotok.data.corpus import build as B
    from sonotok.errors import SonotokError

    extra = [name for name in B.EXTRA_SOURCES if getattr(args, name)]
    try:
        B.build_corpus(
            args.out,
            sources=_split_list(args.sources) or None,
            languages=_split_list(args.languages) or B.DEFAULT_LANGUAGES,
            extra=extra,
            test_speakers=_split_list(args.test_speakers),
            valid_languages=_split_list(args.valid_languages) if args.valid_languages is not None else B.VALID_LANGUAGES,
            test_languages=_split_list(args.test_languages) if args.test_languages is not None else B.TEST_LANGUAGES,
            limit_per_speaker=args.limit_per_speaker,
            sounds_root=args.sounds_root,
            cache_dir=args.cache_dir,
            jobs=args.jobs,
        )
    except SonotokError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _manifest_of(path: Path) -> Path:
    return path / "manifest.jsonl" if path.is_dir() else path


def _cmd_stats(args: argparse.Namespace) -> int:
    from sonotok.data.corpus import corpus_summary, format_summary, plot_speaker_durations, read_manifest
    from sonotok.errors import SonotokError

    path = Path(args.dir)
    manifest = _manifest_of(path)
    if not manifest.exists():
        print(f"error: {manifest} not found (build it with: sonotok corpus build --out {path})", file=sys.stderr)
        return 1
    try:
        rows = read_manifest(manifest)
    except SonotokError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    summary = corpus_summary(rows)
    print(json.dumps(summary, indent=1) if getattr(args, "json", False) else format_summary(summary))
    if getattr(args, "plot", None):
        print(f"wrote {plot_speaker_durations(rows, args.plot)}")
    return 0


def _cmd_mixtures(args: argparse.Namespace) -> int:
    from sonotok.data.corpus.mixtures import write_mixture_set
    from sonotok.errors import SonotokError

    try:
        for k in sorted({int(n) for n in _split_list(args.speakers)}):
            for sr in sorted({int(r) for r in _split_list(args.rates)}):
                out = Path(args.out) / f"{k}spk_{sr // 1000}k"
                write_mixture_set(
                    args.corpus, out, split=args.split, num_sources=k, sample_rate=sr, count=args.count,
                    seed=args.seed, segment_seconds=args.seconds, noise_prob=args.noise_prob,
                    reverb_prob=args.reverb_prob, verbose=True,
                )
    except (SonotokError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``sonotok corpus ...`` on an argparse subparsers object."""
    from sonotok.data.corpus import build as B
    from sonotok.data.corpus.sources import SOUNDS_ROOT

    p = subparsers.add_parser("corpus", help="build or inspect the offline speech corpus, make mixture sets")
    sub = p.add_subparsers(dest="corpus_command")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    b = sub.add_parser(
        "build", help="fetch the Debian speech packages (no root) and build the wav corpus with its splits",
        description="Sources: " + "; ".join(f"{n} ({s.description})" for n, s in B.SOURCES.items()),
    )
    b.add_argument("--out", default="data/corpus", help="output folder (default: data/corpus)")
    b.add_argument("--sources", default=None,
                   help=f"comma-separated subset of the sources (default: all real recordings: {','.join(B.DEFAULT_SOURCES)})")
    b.add_argument("--languages", default=",".join(B.DEFAULT_LANGUAGES),
                   help="Asterisk G.722 languages (default: en,es,fr,it,ru)")
    b.add_argument("--valid-languages", default=None,
                   help=f"languages held out as valid (default: {','.join(B.VALID_LANGUAGES)})")
    b.add_argument("--test-languages", default=None,
                   help=f"languages held out as test (default: {','.join(B.TEST_LANGUAGES)})")
    b.add_argument("--test-speakers", default="", help="speakers held out as well (valid/test interleaved)")
    b.add_argument("--espeak", action="store_true", help="add espeak-ng voices (synthetic) as training speakers")
    b.add_argument("--flite", action="store_true", help="add flite voices (synthetic) as training speakers")
    b.add_argument("--piper", action="store_true", help="add the piper 'joe' voice (synthetic, external program)")
    b.add_argument("--limit-per-speaker", type=int, default=None, metavar="N",
                   help="at most N source clips per speaker group (small test builds)")
    b.add_argument("--sounds-root", default=None,
                   help=f"Asterisk sounds folder to read (default: {SOUNDS_ROOT} when installed, else fetched)")
    b.add_argument("--cache-dir", default=None, help="Debian package cache (default: ~/.cache/sonotok/debian)")
    jobs = min(4, os.cpu_count() or 1)
    b.add_argument("--jobs", type=int, default=jobs, help=f"worker processes (default: {jobs}, the cores up to 4)")
    b.set_defaults(func=_cmd_build)

    for name, helptext in (("stats", "hours, speakers, languages, bandwidth and licences per split"),
                           ("info", "same as stats")):
        i = sub.add_parser(name, help=helptext)
        i.add_argument("dir", help="corpus folder (or a manifest .jsonl)")
        i.add_argument("--plot", default=None, metavar="PNG", help="also write a PNG of minutes per speaker")
        i.add_argument("--json", action="store_true", help="print the summary as JSON")
        i.set_defaults(func=_cmd_stats)

    m = sub.add_parser("mixtures", help="write fixed 2-/3-speaker mixture sets (Libri2Mix layout) from one split")
    m.add_argument("--corpus", default="data/corpus", help="corpus folder (default: data/corpus)")
    m.add_argument("--out", default="data/mixtures", help="output folder; one subfolder per speakers x rate")
    m.add_argument("--split", default="test", help="split to draw speakers from (default: test)")
    m.add_argument("--speakers", default="2,3", help="speakers per mixture (default: 2,3)")
    m.add_argument("--rates", default="8000,16000", help="sample rates (default: 8000,16000)")
    m.add_argument("--count", type=int, default=100, help="mixtures per set (default: 100)")
    m.add_argument("--seconds", type=float, default=4.0, help="mixture length in seconds (default: 4)")
    m.add_argument("--noise-prob", type=float, default=0.0, help="share of mixtures with noise/music")
    m.add_argument("--reverb-prob", type=float, default=0.0, help="share of mixtures with room reverberation")
    m.add_argument("--seed", type=int, default=1234, help="seed (default: 1234, the fixed held-out set)")
    m.set_defaults(func=_cmd_mixtures)
    return p
