"""What the corpus is made of: raw clips grouped by (speaker, language, source), and the Asterisk sources.

A :class:`Source` names its Debian packages, licence and credit and turns the unpacked packages into
:class:`Group` s of :class:`Clip` s. Clips are plain data (picklable, decoded on demand by :meth:`Clip.load`)
so groups can be processed in worker processes. The other Debian sources are in
:mod:`sonotok.data.corpus.packages`, the opt-in synthetic voices in :mod:`sonotok.data.corpus.tts`.

Asterisk sources:

- ``asterisk``: ``asterisk-core-sounds-{en,es,fr,it,ru}-g722``, studio prompts at 16 kHz (G.722, decoded with
  the PyPI package ``G722``), CC-BY-SA-3.0; transcripts ``core-sounds-<lang>.txt.gz`` from the documentation of
  ``asterisk-core-sounds-<lang>``. Read from ``/usr/share/asterisk/sounds`` when installed there, else fetched.
- ``asterisk-it-menardi`` (8 kHz wav), ``asterisk-fr-armelle`` and ``asterisk-es-co`` (8 kHz raw GSM 06.10):
  the same prompt set by other voices, narrowband.
"""

from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from sonotok.data.audio import audio_info, load_audio
from sonotok.data.corpus.segment import nonspeech_by_name
from sonotok.errors import AudioError, SonotokError

SOUNDS_ROOT = "/usr/share/asterisk/sounds"
DOC_ROOT = "/usr/share/doc"
G722_RATE = 16000
DEFAULT_LANGUAGES = ("en", "es", "fr", "it", "ru")
MIN_RATE, MAX_RATE = 4000, 192000

__all__ = [
    "ASTERISK_SOURCES",
    "Clip",
    "CorpusError",
    "Group",
    "Source",
    "decode_g722",
    "read_asterisk_transcripts",
    "speaker_id",
]


class CorpusError(SonotokError):
    """A corpus source is missing or the corpus would be unusable."""


def apt_hint(packages: Sequence[str]) -> str:
    pk = " ".join(packages)
    return f"install it with: apt-get install -y {pk}   (as root, or with sudo)"


# ------------------------------------------------------------------------------------------------ clips


def _g722_class():
    try:
        from G722 import G722
    except ImportError as e:
        raise CorpusError("the PyPI package G722 is needed to decode the Asterisk prompts: pip install G722") from e
    return G722


def decode_g722(path: str | os.PathLike) -> np.ndarray:
    """Decode a raw G.722 file (64 kbit/s, as Asterisk ships them) to float32 samples at 16 kHz."""
    data = Path(path).read_bytes()
    if not data:
        return np.zeros(0, np.float32)
    pcm = np.frombuffer(_g722_class()(G722_RATE, 64000).decode(data), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


@dataclass
class Clip:
    """One raw recording.

    Attributes:
        name: name inside its group (unique there; becomes the output file name), e.g. ``digits/1``.
        path: the file (``None`` for generated speech).
        decoder: ``"sndfile"`` (anything libsndfile reads), ``"g722"`` or ``"gsm"`` (raw 8 kHz GSM 06.10).
        text: transcript, when one exists.
        command: for generated speech: ``(argv, stdin)`` writing the wav named by ``{out}`` in argv.
    """

    name: str
    path: str | None = None
    decoder: str = "sndfile"
    text: str | None = None
    command: tuple[tuple[str, ...], str | None] | None = None

    def load(self) -> tuple[np.ndarray, int]:
        """``(mono float32 samples, sample rate)`` at the file's own rate.

        Raises:
            AudioError: naming the file, when it is unreadable, empty, or declares an implausible rate.
        """
        if self.command is not None:
            from sonotok.data.corpus.tts import run_tts

            return run_tts(self.command)
        assert self.path is not None
        p = Path(self.path)
        if self.decoder == "g722":
            if p.stat().st_size == 0:
                raise AudioError(p, "empty file (0 bytes)")
            return decode_g722(p), G722_RATE
        if self.decoder == "gsm":
            import soundfile as sf

            if p.stat().st_size == 0:
                raise AudioError(p, "empty file (0 bytes)")
            try:
                x, sr = sf.read(str(p), format="RAW", subtype="GSM610", samplerate=8000, channels=1, dtype="float32")
            except (sf.LibsndfileError, RuntimeError) as e:
                raise AudioError(p, f"not raw GSM 06.10 ({e})") from e
            return np.asarray(x, np.float32).reshape(-1), sr
        info = audio_info(p)
        if not MIN_RATE <= info.sample_rate <= MAX_RATE:
            raise AudioError(p, f"implausible declared sample rate {info.sample_rate} Hz")
        return load_audio(p, None, channels="downmix")[0].numpy(), info.sample_rate


@dataclass
class Group:
    """Clips of one speaker in one language from one source, processed (and cached) together.

    Attributes:
        mode: ``"split"``: long prompts, cut at pauses into utterances; ``"join"``: short clips (words,
            syllables), trimmed and joined into 2-6 s utterances.
    """

    speaker: str
    language: str
    source: str
    licence: str
    clips: list[Clip]
    mode: str = "split"
    synthetic: bool = False


@dataclass
class Source:
    """A corpus source: Debian packages, licence and credit, and a function making its groups.

    ``make(roots, options)`` gets ``{package: unpacked root}`` and the build options (``languages``,
    ``sounds_root``, ``limit``) and returns groups.
    """

    name: str
    packages: tuple[str, ...]
    licence: str
    credit: str
    make: Callable[[dict[str, Path], dict], list[Group]]
    synthetic: bool = False
    description: str = ""
    needs: Callable[[dict], tuple[str, ...]] | None = None

    def packages_for(self, options: dict) -> tuple[str, ...]:
        """The Debian packages to fetch for this build (``needs(options)`` when set, else ``packages``)."""
        return self.needs(options) if self.needs is not None else self.packages


def limit_clips(clips: list[Clip], limit: int | None) -> list[Clip]:
    """At most ``limit`` clips, evenly spread (for small test builds)."""
    if limit is None or len(clips) <= limit:
        return clips
    idx = np.linspace(0, len(clips) - 1, limit).round().astype(int)
    return [clips[i] for i in sorted(set(idx.tolist()))]


# --------------------------------------------------------------------------------------------- Asterisk


def speaker_id(dirname: str) -> str:
    """Speaker identity of an Asterisk sound folder: ``en_US_f_Allison`` -> ``allison``,
    ``ru_RU_f_IvrvoiceRU`` -> ``ivrvoice_ru`` (the same talent across languages maps to one id)."""
    m = re.match(r"^[a-z]{2,3}_[A-Z]{2}_[fm]_(\w+)$", dirname)
    name = m.group(1) if m else dirname
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def read_asterisk_transcripts(path: str | os.PathLike) -> dict[str, str]:
    """``{prompt name: text}`` of a ``core-sounds-<lang>.txt[.gz]`` file (``name: text`` lines, ``;``
    comments). Bracketed descriptions of non-speech (``[this is a simple beep tone]``) are left out."""
    p = Path(path)
    raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
    out: dict[str, str] = {}
    for line in raw.decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith(";") or ":" not in line:
            continue
        name, text = line.split(":", 1)
        text = text.strip()
        if text and not (text.startswith("[") and text.endswith("]")):
            out[name.strip()] = text
    return out


def _transcript_file(lang: str, roots: dict[str, Path]) -> Path | None:
    rel = Path("usr/share/doc") / f"asterisk-core-sounds-{lang}" / f"core-sounds-{lang}.txt.gz"
    pkg = roots.get(f"asterisk-core-sounds-{lang}")
    for cand in ([pkg / rel] if pkg else []) + [Path(DOC_ROOT) / rel.relative_to("usr/share/doc")]:
        if cand.is_file():
            return cand
    return None


def _system_has_prompts(languages: Sequence[str]) -> bool:
    system = Path(SOUNDS_ROOT)
    return system.is_dir() and all(any(system.glob(f"{lang}_??_?_*")) for lang in languages)


def asterisk_packages(options: dict) -> tuple[str, ...]:
    """Packages the ``asterisk`` source needs fetched: the transcript (documentation) packages, plus the
    G.722 prompt packages unless the prompts are installed in ``/usr/share/asterisk/sounds`` or
    ``options['sounds_root']`` names a folder."""
    langs = tuple(options.get("languages", DEFAULT_LANGUAGES))
    if options.get("sounds_root") is not None:
        return ()
    docs = tuple(f"asterisk-core-sounds-{lang}" for lang in langs)
    if _system_has_prompts(langs):
        return docs
    return docs + tuple(f"asterisk-core-sounds-{lang}-g722" for lang in langs)


def _sound_roots(options: dict, roots: dict[str, Path]) -> list[Path]:
    if options.get("sounds_root") is not None:
        return [Path(options["sounds_root"])]
    langs = options.get("languages", DEFAULT_LANGUAGES)
    if _system_has_prompts(langs):
        return [Path(SOUNDS_ROOT)]
    return [roots[f"asterisk-core-sounds-{lang}-g722"] / "usr/share/asterisk/sounds" for lang in langs]


def _asterisk_groups(roots: dict[str, Path], options: dict) -> list[Group]:
    languages = list(options.get("languages", DEFAULT_LANGUAGES))
    limit = options.get("limit")
    sound_roots = _sound_roots(options, roots)
    packages = [f"asterisk-core-sounds-{lang}-g722" for lang in languages]
    for sounds_root in sound_roots:
        if not sounds_root.is_dir():
            raise CorpusError(
                f"Asterisk sound folder {sounds_root} not found (Debian packages {', '.join(packages)}); "
                + apt_hint(packages)
                + " - or leave --sounds-root unset to fetch them into the cache without root"
            )
    _g722_class()
    groups: list[Group] = []
    seen: set[str] = set()
    for lang in languages:
        texts_file = _transcript_file(lang, roots)
        texts = read_asterisk_transcripts(texts_file) if texts_file else {}
        dirs = sorted(
            (d for r in sound_roots for d in r.iterdir()
             if re.match(rf"^{re.escape(lang)}_[A-Z]{{2}}_[fm]_\w+$", d.name) and d.is_dir()),
            key=lambda d: d.name,
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
                if not nonspeech_by_name(str(p.relative_to(real)))
            )
            if not files:
                continue
            found = True
            clips = [
                Clip(rel[: -len(".g722")], str(Path(real) / rel), "g722", texts.get(rel[: -len(".g722")]))
                for rel in files
            ]
            groups.append(
                Group(speaker_id(d.name), lang, f"asterisk:{d.name}", ASTERISK.licence, limit_clips(clips, limit))
            )
        if not found:
            pkg = f"asterisk-core-sounds-{lang}-g722"
            raise CorpusError(
                f"no G.722 prompts for language {lang!r} under {', '.join(map(str, sound_roots))} (Debian package {pkg}); " + apt_hint([pkg])
            )
    return groups


def _prompt_clips(root: Path, ext: str, decoder: str, limit: int | None) -> list[Clip]:
    """Prompt files under ``root`` (symlinked duplicates and non-speech names skipped)."""
    seen: set[str] = set()
    clips = []
    for p in sorted(root.rglob(f"*{ext}")):
        real = os.path.realpath(p)
        rel = p.relative_to(root).as_posix()
        if real in seen or p.is_symlink() or nonspeech_by_name(rel) or not p.is_file():
            continue
        seen.add(real)
        clips.append(Clip(rel[: -len(ext)], str(p), decoder))
    return limit_clips(clips, limit)


def _prompt_source(package: str, subdir: str, ext: str, decoder: str, speaker: str, language: str, name: str):
    def make(roots: dict[str, Path], options: dict) -> list[Group]:
        root = roots[package] / "usr/share/asterisk/sounds" / subdir
        if not root.is_dir():
            raise CorpusError(f"{root}: not found in the unpacked package {package} (has its layout changed?)")
        clips = _prompt_clips(root, ext, decoder, options.get("limit"))
        return [Group(speaker, language, f"{name}:{subdir}", SOURCES_LICENCE[name], clips)]

    return make


ASTERISK = Source(
    "asterisk",
    (),  # the G.722 packages depend on the languages chosen; see packages_for()
    "CC-BY-SA-3.0",
    "Asterisk core sound prompts (c) Digium, Inc. / Sangoma, voices Allison (en, es), June (fr), "
    "Carlo (it) and the Russian IVR voice; Creative Commons Attribution-ShareAlike 3.0 Unported",
    _asterisk_groups,
    description="Asterisk core prompts, 16 kHz G.722 (en es fr it ru), transcripts",
    needs=asterisk_packages,
)

SOURCES_LICENCE = {
    "asterisk-it-menardi": "CC-BY-SA-3.0-IT",
    "asterisk-fr-armelle": "BSD-2-clause-like",
    "asterisk-es-co": "GPL-2",
}

ASTERISK_SOURCES = (
    ASTERISK,
    Source(
        "asterisk-it-menardi",
        ("asterisk-prompt-it-menardi-wav",),
        SOURCES_LICENCE["asterisk-it-menardi"],
        "Italian Asterisk prompts: the sound files were made by Marco Menardi and Paola Dal Zot, "
        "http://www.voip.ammdomus.it - Copyright (C) 2006-2011 Marco Menardi e "
        "Paola Dal Zot; Creative Commons Attribuzione - Condividi allo stesso modo 3.0 Italia. The licence "
        "asks that end users be shown this credit visibly. The English prompt text is (c) Digium.",
        _prompt_source("asterisk-prompt-it-menardi-wav", "it_IT_f_Menardi", ".wav", "sndfile", "menardi", "it",
                       "asterisk-it-menardi"),
        description="Italian prompts, 8 kHz wav (narrowband)",
    ),
    Source(
        "asterisk-fr-armelle",
        ("asterisk-prompt-fr-armelle",),
        SOURCES_LICENCE["asterisk-fr-armelle"],
        "French Asterisk prompts, voice actor Armelle Desjardins; Copyright (C) 2006 Michel Gutierrez. "
        "Redistribution and use, with or without modification, are permitted provided that redistributions "
        "retain this copyright notice and disclaimer; the name of Indigen Solutions may not be used to endorse "
        "derived products. Provided AS IS, without warranty.",
        _prompt_source("asterisk-prompt-fr-armelle", "fr", ".gsm", "gsm", "armelle", "fr", "asterisk-fr-armelle"),
        description="French prompts, 8 kHz GSM (narrowband)",
    ),
    Source(
        "asterisk-es-co",
        ("asterisk-prompt-es-co",),
        SOURCES_LICENCE["asterisk-es-co"],
        "Colombian Spanish Asterisk prompts by Avatar Ltda. / July E. Jimenez; GNU GPL version 2.",
        _prompt_source("asterisk-prompt-es-co", "es", ".gsm", "gsm", "july_jimenez", "es", "asterisk-es-co"),
        description="Colombian Spanish prompts, 8 kHz GSM (narrowband)",
    ),
)
