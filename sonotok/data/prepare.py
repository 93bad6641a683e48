"""Prepare steps of the dataset recipes: JSONL manifests from a user-downloaded copy of a public dataset.

Nothing is downloaded: point ``root`` at the copy you have. Every function checks the folder layout
first and raises :class:`DatasetLayoutError` naming the folder it looked at, what is missing and the
layout it expected. Manifests are written as ``<out>/<split>.jsonl`` with one row per file::

    {"path": ..., "duration": 3.52, "sample_rate": 24000, "speaker": "84", "split": "train",
     "subset": "train-clean-100", "text": "..."}

``path`` is absolute by default, or relative to ``out`` with ``relative=True`` (the datasets'
readers resolve relative paths against the manifest's folder). Libri2Mix manifests hold one mixture
per row with ``mix``, ``s1``, ``s2`` (and ``noise`` for ``mix_both``) columns; ``path`` repeats ``mix``.

Layouts (as distributed):

* LibriTTS (openslr 60): ``LibriTTS/<subset>/<spk>/<chapter>/<spk>_<chapter>_<utt>.wav`` +
  ``.normalized.txt``; subsets ``train-clean-100``, ``train-clean-360``, ``train-other-500``,
  ``dev-clean``, ``dev-other``, ``test-clean``, ``test-other``.
* LibriSpeech (openslr 12): ``LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` +
  ``<spk>-<chapter>.trans.txt``.
* VCTK 0.92: ``VCTK-Corpus-0.92/wav48_silence_trimmed/<spk>/<spk>_<utt>_mic1.flac`` + ``txt/<spk>/<spk>_<utt>.txt``
  (no official split: the last speakers in sorted order are held out, or name them).
* Libri2Mix (JorisCos/LibriMix): ``Libri2Mix/wav8k/min/<split>/{mix_clean,mix_both,s1,s2,noise}/*.wav``;
  splits ``train-360``, ``train-100``, ``dev``, ``test``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from sonotok.data.atomic import atomic_path
from sonotok.data.sources import list_audio_files
from sonotok.errors import SonotokError


class DatasetLayoutError(SonotokError):
    """A dataset folder that does not have the expected layout (the message says which and what)."""


LIBRITTS_SUBSETS = {
    "train-clean-100": "train", "train-clean-360": "train", "train-other-500": "train",
    "dev-clean": "valid", "dev-other": "valid", "test-clean": "test", "test-other": "test",
}
LIBRISPEECH_SUBSETS = LIBRITTS_SUBSETS
LIBRI2MIX_SPLITS = {"train-360": "train", "train-100": "train", "dev": "valid", "test": "test"}

LIBRITTS_LAYOUT = ("LibriTTS/<subset>/<speaker>/<chapter>/<speaker>_<chapter>_<utt>.wav (+ .normalized.txt), "
                   "subsets " + ", ".join(LIBRITTS_SUBSETS))
LIBRISPEECH_LAYOUT = ("LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac "
                      "(+ <speaker>-<chapter>.trans.txt), subsets " + ", ".join(LIBRISPEECH_SUBSETS))
VCTK_LAYOUT = ("VCTK-Corpus-0.92/wav48_silence_trimmed/<speaker>/<speaker>_<utt>_mic1.flac "
               "(+ txt/<speaker>/<speaker>_<utt>.txt)")
LIBRI2MIX_LAYOUT = ("Libri2Mix/wav<8k|16k>/<min|max>/<split>/{mix_clean,mix_both,s1,s2,noise}/<id>.wav, "
                    "splits " + ", ".join(LIBRI2MIX_SPLITS))


# ----------------------------------------------------------------------------- helpers

def _info(path: Path) -> tuple[float, int]:
    from sonotok.data.audio import audio_info

    info = audio_info(path)
    return float(info.duration), int(info.sample_rate)


def _find_root(root: Path, marker: Callable[[Path], bool], names: Sequence[str], layout: str, dataset: str) -> Path:
    """``root`` itself or a child named in ``names`` that satisfies ``marker``; else a layout error."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: no such folder; expected the {dataset} download: {layout}")
    if marker(root):
        return root
    for n in names:
        if (root / n).is_dir() and marker(root / n):
            return root / n
    have = sorted(p.name + "/" for p in root.iterdir() if p.is_dir())[:12]
    raise DatasetLayoutError(
        f"{root}: not a {dataset} folder (found {', '.join(have) or 'no sub-folders'}); expected {layout}"
    )


def _write(rows_by_split: Dict[str, List[dict]], out: Path, relative: bool) -> Dict[str, int]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, rows in rows_by_split.items():
        if not rows:
            continue
        with atomic_path(out / f"{split}.jsonl") as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for r in rows:
                r = dict(r)
                for k in ("path", "mix", "s1", "s2", "noise"):
                    if k in r:
                        r[k] = os.path.relpath(r[k], out) if relative else str(Path(r[k]).resolve())
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        counts[split] = len(rows)
    return counts


def _pick_subsets(root: Path, known: Dict[str, str], subsets: Optional[Iterable[str]], layout: str,
                  dataset: str) -> List[str]:
    present = [s for s in known if (root / s).is_dir()]
    if subsets is None:
        if not present:
            raise DatasetLayoutError(f"{root}: none of the {dataset} subsets {', '.join(known)} found; "
                                     f"expected {layout}")
        return present
    chosen = list(subsets)
    unknown = [s for s in chosen if s not in known]
    if unknown:
        raise DatasetLayoutError(f"unknown {dataset} subset(s) {unknown}: expected some of {', '.join(known)}")
    missing = [s for s in chosen if not (root / s).is_dir()]
    if missing:
        raise DatasetLayoutError(f"{root}: missing subset folder(s) {', '.join(m + '/' for m in missing)} "
                                 f"(present: {', '.join(present) or 'none'}); expected {layout}")
    return chosen


def _read_text(path: Path) -> Optional[str]:
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


# ----------------------------------------------------------------------------- LibriTTS

def prepare_libritts(root: str | os.PathLike, out: str | os.PathLike, subsets: Optional[Iterable[str]] = None,
                     relative: bool = False) -> Dict[str, int]:
    """LibriTTS manifests: train-* -> train.jsonl, dev-* -> valid.jsonl, test-* -> test.jsonl (24 kHz).

    Args:
        root: the ``LibriTTS`` folder (or its parent).
        out: output folder.
        subsets: subset names (default: all present).
        relative: write paths relative to ``out``.

    Returns:
        rows per split.

    Raises:
        DatasetLayoutError: wrong folder, missing subsets, files not named ``<spk>_<chapter>_<utt>.wav``.
    """
    def marker(p: Path) -> bool:
        return any((p / s).is_dir() for s in LIBRITTS_SUBSETS)

    base = _find_root(Path(root), marker, ["LibriTTS"], LIBRITTS_LAYOUT, "LibriTTS")
    rows: Dict[str, List[dict]] = {"train": [], "valid": [], "test": []}
    for subset in _pick_subsets(base, LIBRITTS_SUBSETS, subsets, LIBRITTS_LAYOUT, "LibriTTS"):
        files = sorted((base / subset).glob("*/*/*.wav"))
        if not files:
            stray = sorted((base / subset).rglob("*.wav"))[:1]
            hint = f" (found {stray[0]} at another depth)" if stray else ""
            raise DatasetLayoutError(f"{base / subset}: no <speaker>/<chapter>/*.wav files{hint}; "
                                     f"expected {LIBRITTS_LAYOUT}")
        for f in files:
            spk, chapter = f.parent.parent.name, f.parent.name
            if not f.stem.startswith(f"{spk}_{chapter}_"):
                raise DatasetLayoutError(f"{f}: name does not start with <speaker>_<chapter>_ "
                                         f"({spk}_{chapter}_); expected {LIBRITTS_LAYOUT}")
            duration, sr = _info(f)
            row = {"path": str(f), "duration": duration, "sample_rate": sr, "speaker": spk,
                   "split": LIBRITTS_SUBSETS[subset], "subset": subset, "id": f.stem}
            text = _read_text(f.with_suffix(".normalized.txt"))
            if text is not None:
                row["text"] = text
            rows[row["split"]].append(row)
    return _write(rows, Path(out), relative)


# ----------------------------------------------------------------------------- LibriSpeech

def prepare_librispeech(root: str | os.PathLike, out: str | os.PathLike, subsets: Optional[Iterable[str]] = None,
                        relative: bool = False) -> Dict[str, int]:
    """LibriSpeech manifests (16 kHz FLAC) with transcripts from ``<spk>-<chapter>.trans.txt``.

    Args and returns as :func:`prepare_libritts`; ``root`` is the ``LibriSpeech`` folder (or its parent).
    """
    def marker(p: Path) -> bool:
        return any((p / s).is_dir() for s in LIBRISPEECH_SUBSETS)

    base = _find_root(Path(root), marker, ["LibriSpeech"], LIBRISPEECH_LAYOUT, "LibriSpeech")
    rows: Dict[str, List[dict]] = {"train": [], "valid": [], "test": []}
    name_re = re.compile(r"^(\d+)-(\d+)-(\d+)$")
    for subset in _pick_subsets(base, LIBRISPEECH_SUBSETS, subsets, LIBRISPEECH_LAYOUT, "LibriSpeech"):
        chapters = sorted(p for p in (base / subset).glob("*/*") if p.is_dir())
        if not chapters:
            raise DatasetLayoutError(f"{base / subset}: no <speaker>/<chapter>/ folders; expected {LIBRISPEECH_LAYOUT}")
        n_files = 0
        for ch in chapters:
            spk, chapter = ch.parent.name, ch.name
            trans: Dict[str, str] = {}
            tfile = ch / f"{spk}-{chapter}.trans.txt"
            if tfile.is_file():
                for line in tfile.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        uid, _, text = line.strip().partition(" ")
                        trans[uid] = text
            for f in sorted(ch.glob("*.flac")):
                m = name_re.match(f.stem)
                if not m or m.group(1) != spk or m.group(2) != chapter:
                    raise DatasetLayoutError(f"{f}: name is not <speaker>-<chapter>-<utt>.flac "
                                             f"({spk}-{chapter}-NNNN); expected {LIBRISPEECH_LAYOUT}")
                duration, sr = _info(f)
                row = {"path": str(f), "duration": duration, "sample_rate": sr, "speaker": spk,
                       "split": LIBRISPEECH_SUBSETS[subset], "subset": subset, "id": f.stem}
                if f.stem in trans:
                    row["text"] = trans[f.stem]
                rows[row["split"]].append(row)
                n_files += 1
        if not n_files:
            raise DatasetLayoutError(f"{base / subset}: no .flac files under <speaker>/<chapter>/; "
                                     f"expected {LIBRISPEECH_LAYOUT}")
    return _write(rows, Path(out), relative)


# ----------------------------------------------------------------------------- VCTK

def prepare_vctk(root: str | os.PathLike, out: str | os.PathLike, mic: str = "mic1",
                 valid_speakers: Optional[Sequence[str]] = None, test_speakers: Optional[Sequence[str]] = None,
                 num_valid: int = 2, num_test: int = 4, relative: bool = False) -> Dict[str, int]:
    """VCTK 0.92 manifests with held-out speakers (VCTK has no official split).

    Args:
        root: the ``VCTK-Corpus-0.92`` folder (or its parent).
        out: output folder.
        mic: ``mic1`` or ``mic2``.
        valid_speakers / test_speakers: held-out speakers; default: the last ``num_test`` speakers in
            sorted order for test and the ``num_valid`` before them for valid.
        num_valid / num_test: sizes of the default held-out sets.
        relative: write paths relative to ``out``.
    """
    if mic not in ("mic1", "mic2"):
        raise ValueError(f"mic must be 'mic1' or 'mic2', got {mic!r}")

    def marker(p: Path) -> bool:
        return (p / "wav48_silence_trimmed").is_dir()

    base = _find_root(Path(root), marker, ["VCTK-Corpus-0.92", "VCTK"], VCTK_LAYOUT, "VCTK 0.92")
    wav_root = base / "wav48_silence_trimmed"
    speakers = sorted(p.name for p in wav_root.iterdir() if p.is_dir())
    if not speakers:
        raise DatasetLayoutError(f"{wav_root}: no <speaker>/ folders; expected {VCTK_LAYOUT}")
    unknown = [s for s in [*(valid_speakers or []), *(test_speakers or [])] if s not in speakers]
    if unknown:
        raise DatasetLayoutError(f"{wav_root}: held-out speaker(s) {unknown} not found")
    if test_speakers is None:
        test_speakers = speakers[-num_test:] if num_test else []
    if valid_speakers is None:
        rest = [s for s in speakers if s not in test_speakers]
        valid_speakers = rest[-num_valid:] if num_valid else []
    rows: Dict[str, List[dict]] = {"train": [], "valid": [], "test": []}
    for spk in speakers:
        split = "test" if spk in test_speakers else "valid" if spk in valid_speakers else "train"
        for f in sorted((wav_root / spk).glob(f"*_{mic}.flac")):
            utt = f.stem[: -len(mic) - 1]
            if not utt.startswith(f"{spk}_"):
                raise DatasetLayoutError(f"{f}: name is not <speaker>_<utt>_{mic}.flac; expected {VCTK_LAYOUT}")
            duration, sr = _info(f)
            row = {"path": str(f), "duration": duration, "sample_rate": sr, "speaker": spk, "split": split,
                   "id": utt}
            text = _read_text(base / "txt" / spk / f"{utt}.txt")
            if text is not None:
                row["text"] = text
            rows[split].append(row)
    if not any(rows.values()):
        stray = sorted(wav_root.rglob("*.flac"))[:1]
        hint = f" (found {stray[0]})" if stray else ""
        raise DatasetLayoutError(f"{wav_root}: no <speaker>/<speaker>_<utt>_{mic}.flac files{hint}; expected {VCTK_LAYOUT}")
    return _write(rows, Path(out), relative)


# ----------------------------------------------------------------------------- Libri2Mix

def prepare_libri2mix(root: str | os.PathLike, out: str | os.PathLike, sample_rate: str = "8k", mode: str = "min",
                      mixture: str = "clean", splits: Optional[Iterable[str]] = None,
                      relative: bool = False) -> Dict[str, int]:
    """Libri2Mix mixture manifests: one row per mixture with ``mix``, ``s1``, ``s2`` (``noise`` for ``both``).

    Args:
        root: the ``Libri2Mix`` folder (or its parent).
        out: output folder.
        sample_rate: ``8k`` or ``16k`` (folder ``wav8k`` / ``wav16k``).
        mode: ``min`` or ``max``.
        mixture: ``clean`` (``mix_clean``) or ``both`` (``mix_both``: speech + WHAM! noise).
        splits: split names (default: all present of train-360, train-100, dev, test).
        relative: write paths relative to ``out``.
    """
    if mixture not in ("clean", "both"):
        raise ValueError(f"mixture must be 'clean' or 'both', got {mixture!r}")
    sub = Path(f"wav{sample_rate}") / mode

    def marker(p: Path) -> bool:
        return (p / sub).is_dir()

    layout = f"{LIBRI2MIX_LAYOUT} (looked for {sub.as_posix()}/)"
    base = _find_root(Path(root), marker, ["Libri2Mix"], layout, "Libri2Mix") / sub
    need = [f"mix_{mixture}", "s1", "s2"] + (["noise"] if mixture == "both" else [])
    rows: Dict[str, List[dict]] = {"train": [], "valid": [], "test": []}
    for split in _pick_subsets(base, LIBRI2MIX_SPLITS, splits, LIBRI2MIX_LAYOUT, "Libri2Mix"):
        d = base / split
        missing = [n for n in need if not (d / n).is_dir()]
        if missing:
            raise DatasetLayoutError(f"{d}: missing folder(s) {', '.join(m + '/' for m in missing)}; "
                                     f"expected {LIBRI2MIX_LAYOUT}")
        mixes = list_audio_files(d / need[0], recursive=False)
        if not mixes:
            raise DatasetLayoutError(f"{d / need[0]}: no audio mixtures (.wav, .flac, ...); expected {LIBRI2MIX_LAYOUT}")
        for m in mixes:
            paths = {"mix": m, **{n: d / n / m.name for n in need[1:]}}
            lost = [str(p) for p in paths.values() if not p.is_file()]
            if lost:
                raise DatasetLayoutError(f"{lost[0]}: missing (source of mixture {m})")
            duration, sr = _info(m)
            row = {"path": str(m), **{k: str(v) for k, v in paths.items()}, "duration": duration,
                   "sample_rate": sr, "split": LIBRI2MIX_SPLITS[split], "subset": split, "id": m.stem,
                   # Libri2Mix ids are <s1 utterance>_<s2 utterance>; speakers are their first fields
                   "speakers": [u.split("-")[0] for u in m.stem.split("_")[:2]]}
            rows[row["split"]].append(row)
    return _write(rows, Path(out), relative)


DATASETS: Dict[str, Callable[..., Dict[str, int]]] = {
    "libritts": prepare_libritts,
    "librispeech": prepare_librispeech,
    "vctk": prepare_vctk,
    "libri2mix": prepare_libri2mix,
}


def prepare(dataset: str, root: str | os.PathLike, out: str | os.PathLike, **kwargs) -> Dict[str, int]:
    """Dispatch to ``prepare_<dataset>``; returns rows per split."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    return DATASETS[dataset](root, out, **kwargs)
