"""Real-speech Debian packages beyond Asterisk (measured inventory: ``notes/offline-speech-sources.md``).

Each source turns the unpacked package(s) into :class:`~sonotok.data.corpus.sources.Group` s. Speakers are
named ``<source>_<language>[_<role>]``: the packages do not say who spoke, so one volunteer may appear under
several ids (Tux Paint, KLettres and KTuberling share translators); the splits therefore hold out whole
languages (:mod:`sonotok.data.corpus.build`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from sonotok.data.corpus.sources import Clip, CorpusError, Group, Source, limit_clips

__all__ = ["PACKAGE_SOURCES", "read_fillets_dialogs", "read_festvox_transcripts"]


def _need_dir(path: Path, package: str) -> Path:
    if not path.is_dir():
        raise CorpusError(f"{path}: not found in the unpacked package {package} (has its layout changed?)")
    return path


# ------------------------------------------------------------------------------------------- Tux Paint

_TUX_DESC = re.compile(r"^(?P<stem>.+)_desc_(?P<lang>[a-z]{2,3})(?:_[A-Z]{2})?\.ogg$")


def _tuxpaint(roots: dict[str, Path], options: dict) -> list[Group]:
    pkg = "tuxpaint-stamps-default"
    root = _need_dir(roots[pkg] / "usr/share/tuxpaint/stamps", pkg)
    by_lang: dict[str, list[Clip]] = defaultdict(list)
    for p in sorted(root.rglob("*_desc_*.ogg")):
        m = _TUX_DESC.match(p.name)
        if m:
            by_lang[m.group("lang")].append(Clip(p.relative_to(root).as_posix()[: -len(".ogg")], str(p)))
    return [
        Group(f"tuxpaint_{lang}", lang, f"tuxpaint:{lang}", "GPL-2", limit_clips(c, options.get("limit")), "join")
        for lang, c in sorted(by_lang.items())
    ]


# ---------------------------------------------------------------------------------------- Fish Fillets

_DIALOG_ID = re.compile(r'dialogId\(\s*"(?P<id>[^"]+)"\s*,\s*"(?P<font>[^"]*)"')
_DIALOG_STR = re.compile(r'dialogStr\(\s*"(?P<text>(?:[^"\\]|\\.)*)"\s*\)')


def read_fillets_dialogs(path: str | Path) -> dict[str, tuple[str, str]]:
    """``{dialog id: (speaker font, localised text)}`` of a Fish Fillets ``dialogs_<lang>.lua`` file
    (``dialogId("id", "font_small", "English")`` followed by ``dialogStr("text")``)."""
    out: dict[str, tuple[str, str]] = {}
    cur: tuple[str, str] | None = None
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        m = _DIALOG_ID.search(line)
        if m:
            cur = (m.group("id"), m.group("font"))
            continue
        m = _DIALOG_STR.search(line)
        if m and cur is not None:
            text = m.group("text").replace('\\"', '"').replace("\\n", " ").strip()
            out[cur[0]] = (cur[1], text)
            cur = None
    return out


def _fillets(lang: str):
    data_pkg, voice_pkg = "fillets-ng-data", f"fillets-ng-data-{lang}"

    def make(roots: dict[str, Path], options: dict) -> list[Group]:
        sound = _need_dir(roots[voice_pkg] / "usr/share/games/fillets-ng/sound", voice_pkg)
        script = _need_dir(roots[data_pkg] / "usr/share/games/fillets-ng/script", data_pkg)
        by_spk: dict[str, list[Clip]] = defaultdict(list)
        for level in sorted(p for p in sound.iterdir() if (p / lang).is_dir()):
            lua = script / level.name / f"dialogs_{lang}.lua"
            dialogs = read_fillets_dialogs(lua) if lua.is_file() else {}
            for f in sorted((level / lang).glob("*.ogg")):
                entry = dialogs.get(f.stem) or dialogs.get(f.stem.rstrip("0123456789"))
                font, text = entry if entry else ("", None)
                # speaker: the font names the character (font_small: the small fish, font_big: the big one);
                # lines without a dialog entry keep the file's speaker code (<level>-<spk>-<id>)
                if font.startswith("font_"):
                    role = font[5:]
                elif font:
                    role = font
                else:
                    parts = f.stem.split("-")
                    role = parts[1] if len(parts) > 2 else "other"
                by_spk[re.sub(r"[^a-z0-9]+", "_", role.lower())].append(
                    Clip(f"{level.name}/{f.stem}", str(f), text=text if entry and f.stem in dialogs else None)
                )
        return [
            Group(f"fillets_{lang}_{role}", lang, f"fillets:{lang}", "GPL-2", limit_clips(c, options.get("limit")))
            for role, c in sorted(by_spk.items())
        ]

    return make


# ---------------------------------------------------------------------------------------------- festvox


def read_festvox_transcripts(path: str | Path) -> dict[str, str]:
    """``{utterance id: text}`` of a festvox ``etc/txt.done.data`` (``( ru_0001 "text" )`` lines); the stress
    marks ``+`` of the Russian voice are removed."""
    out = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r'^\(\s*(\S+)\s+"(.*)"\s*\)\s*$', line.strip())
        if m:
            out[m.group(1)] = m.group(2).replace("+", "").strip()
    return out


def _festvox_ru(roots: dict[str, Path], options: dict) -> list[Group]:
    pkg = "festvox-ru"
    voice = _need_dir(roots[pkg] / "usr/share/festival/voices/russian/msu_ru_nsh_clunits", pkg)
    texts_file = voice / "etc/txt.done.data"
    texts = read_festvox_transcripts(texts_file) if texts_file.is_file() else {}
    clips = [Clip(f.stem, str(f), text=texts.get(f.stem)) for f in sorted(_need_dir(voice / "wav", pkg).glob("*.wav"))]
    return [Group("festvox_msu_ru_nsh", "ru", "festvox-ru:msu_ru_nsh", "BSD-like (festvox-ru)",
                  limit_clips(clips, options.get("limit")))]


# ------------------------------------------------------------------------------------ KLettres, KTuberling


def _lang_code(folder: str) -> str:
    """``pt_BR`` -> ``pt``, ``sr@latin`` -> ``sr``, ``en_GB`` -> ``en``."""
    return re.split(r"[_@]", folder)[0].lower()


def _klettres(roots: dict[str, Path], options: dict) -> list[Group]:
    pkg = "klettres-data"
    root = _need_dir(roots[pkg] / "usr/share/klettres", pkg)
    by: dict[str, list[Clip]] = defaultdict(list)
    for d in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in ("icons", "pics")):
        for f in sorted(d.rglob("*.ogg")):
            by[d.name].append(Clip(f.relative_to(root).as_posix()[: -len(".ogg")], str(f)))
    return [
        Group(f"klettres_{re.sub(r'[^a-z0-9]+', '_', folder.lower())}", _lang_code(folder), f"klettres:{folder}",
              "GPL-2+", limit_clips(c, options.get("limit")), "join")
        for folder, c in sorted(by.items())
    ]


def _ktuberling(roots: dict[str, Path], options: dict) -> list[Group]:
    pkg = "ktuberling-data"
    root = _need_dir(roots[pkg] / "usr/share/ktuberling/sounds", pkg)
    groups = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in (".ogg", ".wav", ".opus"))
        clips = [Clip(f"{d.name}/{f.stem}", str(f)) for f in files]
        if clips:
            groups.append(Group(f"ktuberling_{re.sub(r'[^a-z0-9]+', '_', d.name.lower())}", _lang_code(d.name),
                                f"ktuberling:{d.name}", "GPL-2+", limit_clips(clips, options.get("limit")), "join"))
    return groups


# -------------------------------------------------------------------------------------------- gcin-voice

GCIN_LICENCE = {"3": "GPL-3 or LGPL-3", "5": "CC-BY-3.0"}


def _gcin(roots: dict[str, Path], options: dict) -> list[Group]:
    pkg = "gcin-voice"
    root = _need_dir(roots[pkg] / "usr/share/gcin-voice/ogg", pkg)
    by: dict[str, list[Clip]] = defaultdict(list)
    for syl in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(syl.glob("*.ogg")):
            # one bopomofo syllable (with its tone digit) per file: the folder name is the transcript
            by[f.stem].append(Clip(f"{syl.name}_{f.stem}", str(f), text=syl.name))
    return [
        Group(f"gcin_{voice}", "zh", f"gcin-voice:{voice}", GCIN_LICENCE.get(voice, "GPL-3"),
              limit_clips(c, options.get("limit")), "join")
        for voice, c in sorted(by.items())
    ]


PACKAGE_SOURCES = (
    Source("festvox-ru", ("festvox-ru",), "BSD-like",
           "festvox-ru (msu_ru_nsh_clunits voice): Copyright (c) 2005 Nickolay V. Shmyrev, All Rights Reserved. "
           "Permission is granted to use and distribute without restriction provided that the copyright notice "
           "is retained, modifications are clearly marked as such (here: the recordings were resampled to "
           "16 kHz, trimmed, cut at pauses and loudness-normalised by sonotok), the original authors' names are "
           "not deleted and are not used to endorse derived products.",
           _festvox_ru, description="Russian read sentences, 16 kHz studio, transcripts"),
    Source("fillets-cs", ("fillets-ng-data-cs", "fillets-ng-data"), "GPL-2",
           "Fish Fillets - Next Generation, Czech voices (c) 2004-2016 the Fish Fillets NG authors (Altar "
           "Interactive, Michal Cihar and contributors); GNU GPL version 2",
           _fillets("cs"), description="Czech game dialogs, 22 kHz, transcripts"),
    Source("fillets-nl", ("fillets-ng-data-nl", "fillets-ng-data"), "GPL-2",
           "Fish Fillets - Next Generation, Dutch voices (c) the Fish Fillets NG authors and the Dutch voice "
           "actors; GNU GPL version 2", _fillets("nl"), description="Dutch game dialogs, 22 kHz, transcripts"),
    Source("tuxpaint", ("tuxpaint-stamps-default",), "GPL-2",
           "Tux Paint stamps: descriptions read by the Tux Paint volunteers, (c) 2002-2022 Bill Kendrick and "
           "the Tux Paint contributors; GNU GPL version 2", _tuxpaint,
           description="stamp descriptions, 44.1 kHz, 13 languages"),
    Source("klettres", ("klettres-data",), "GPL-2+",
           "KLettres sounds (c) 2001-2011 Anne-Marie Mahfouf and the KDE translators; GNU GPL version 2 or later",
           _klettres, description="letters and syllables, ~20 languages"),
    Source("ktuberling", ("ktuberling-data",), "GPL-2+",
           "KTuberling sounds (c) 2007-2017 Albert Astals Cid and the KDE translators; GNU GPL version 2 or later",
           _ktuberling, description="single words, ~23 languages (some 8 kHz)"),
    Source("gcin-voice", ("gcin-voice",), "GPL-3/LGPL-3 and CC-BY-3.0",
           "gcin-voice: voice 3 (c) 2014 Edward Der-Hua Liu, GNU GPL 3 or LGPL 3; voice 5 recorded by Chu Lo "
           "(ChionMeilin project, 聲優 羅竺與徵音梅林開發委員會錄音組), Creative Commons Attribution 3.0",
           _gcin, description="Mandarin syllables, 2 voices"),
)
