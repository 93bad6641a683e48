"""Reading, checking, resampling and atomically writing audio files.

Everything goes through soundfile (libsndfile: wav, flac, ogg/vorbis, opus, aiff, ...); ``torchaudio.load``
is not used because it needs torchcodec. Resampling uses ``torchaudio.functional.resample``.

Every problem with an input file raises :class:`sonotok.errors.AudioError` whose message names the file
and gives a one-line reason.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from sonotok.data.atomic import atomic_path
from sonotok.errors import AudioError

CHANNEL_POLICIES = ("downmix", "reject", "first", "keep")
# The one list of audio file extensions every scanner uses (datasets, tokenize, eval, separate, mixtures):
# the common names plus every container libsndfile reports, except raw PCM and MATLAB files (no header).
_COMMON_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".oga", ".mp3", ".aiff", ".aif", ".aifc", ".au", ".snd")
AUDIO_EXTENSIONS = tuple(
    sorted(
        set(_COMMON_EXTENSIONS)
        | {"." + f.lower() for f in sf.available_formats()} - {".raw", ".mat4", ".mat5"}
    )
)


def is_audio_path(path: str | os.PathLike) -> bool:
    """Whether a file name has one of :data:`AUDIO_EXTENSIONS` (case-insensitive; the file is not opened)."""
    return os.path.splitext(str(path))[1].lower() in AUDIO_EXTENSIONS

__all__ = [
    "AUDIO_EXTENSIONS",
    "CHANNEL_POLICIES",
    "AudioInfo",
    "audio_info",
    "is_audio_path",
    "load_audio",
    "resample",
    "save_audio",
]


@dataclass(frozen=True)
class AudioInfo:
    """What the header of an audio file says.

    Attributes:
        sample_rate: samples per second.
        frames: samples per channel.
        channels: number of channels.
        duration: seconds (``frames / sample_rate``).
        format: container (``"WAV"``, ``"FLAC"``, ...).
        subtype: sample encoding (``"PCM_16"``, ``"FLOAT"``, ...).
    """

    sample_rate: int
    frames: int
    channels: int
    duration: float
    format: str = ""
    subtype: str = ""


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission denied (file is not readable)")
    try:
        size = path.stat().st_size
    except OSError as e:  # pragma: no cover - races
        raise AudioError(path, f"cannot stat file ({e.strerror})") from e
    if size == 0:
        raise AudioError(path, "empty file (0 bytes)")


_TRUNCATED_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _describe_sf_error(path: Path, err: Exception) -> str:
    msg = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    # libsndfile's message usually repeats the path; keep only the reason part.
    low = msg.lower()
    with open(path, "rb") as f:
        head = f.read(12)
    known_magic = (
        head[:4] in (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM", b".snd") or head[:3] == b"ID3"
    )
    if known_magic:
        return f"corrupt or truncated audio header ({head[:4].decode('latin-1')} file; libsndfile: {_short(low)})"
    if "format not recognised" in low or "unknown format" in low or "not recognised" in low:
        return f"not an audio file or unsupported format (unrecognised bytes {head[:4]!r})"
    return f"unreadable audio ({_short(low)})"


def _short(msg: str) -> str:
    for sep in ("error :", "error:"):
        if sep in msg:
            msg = msg.split(sep, 1)[1]
    return msg.strip().rstrip(".")[:160]


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read the header of an audio file without decoding it.

    Args:
        path: any file libsndfile reads.

    Returns:
        :class:`AudioInfo` (sample_rate, frames, channels, duration, format, subtype).

    Raises:
        AudioError: missing, unreadable, empty, corrupt, non-audio or zero-length files.
    """
    p = Path(path)
    _check_path(p)
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(p, _describe_sf_error(p, e)) from e
    if info.samplerate <= 0:
        raise AudioError(p, f"invalid sample rate {info.samplerate} in header")
    if info.channels <= 0:
        raise AudioError(p, f"invalid channel count {info.channels} in header")
    if info.frames <= 0:
        raise AudioError(p, "zero-length audio (header declares 0 frames)")
    m = _TRUNCATED_DATA.search(getattr(info, "extra_info", "") or "")
    if m is not None:
        declared, actual = int(m.group(1)), int(m.group(2))
        # 0 and 0xFFFFFFFF/0x7FFFFFFF are what streaming writers put before the size is known: not damage.
        if declared > actual and declared not in (0, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFF - 8):
            raise AudioError(
                p, f"truncated audio data (header declares {declared} bytes, file holds {actual})"
            )
    return AudioInfo(
        sample_rate=int(info.samplerate),
        frames=int(info.frames),
        channels=int(info.channels),
        duration=float(info.frames) / float(info.samplerate),
        format=str(info.format),
        subtype=str(info.subtype),
    )


def resample(wav: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Resample ``[..., T]`` audio with ``torchaudio.functional.resample`` (no-op when rates match)."""
    if int(orig_sr) == int(new_sr):
        return wav
    return AF.resample(wav, int(orig_sr), int(new_sr))


def _apply_channels(p: Path, wav: torch.Tensor, channels: str) -> torch.Tensor:
    if channels not in CHANNEL_POLICIES:
        raise ValueError(f"channels must be one of {CHANNEL_POLICIES}, got {channels!r}")
    c = wav.shape[0]
    if c == 1 or channels == "keep":
        return wav
    if channels == "downmix":
        return wav.mean(dim=0, keepdim=True)
    if channels == "first":
        return wav[:1]
    raise AudioError(p, f"wrong channel count: {c} channels, expected mono (channels='reject')")


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    channels: str = "downmix",
    offset: float = 0.0,
    duration: float | None = None,
) -> torch.Tensor:
    """Load an audio file as a float32 tensor ``[C, T]`` in [-1, 1].

    Args:
        path: any file libsndfile reads (wav, flac, ogg, ...).
        sample_rate: resample to this rate; ``None`` keeps the file's rate.
        channels: ``"downmix"`` (mean to mono), ``"reject"`` (raise on multichannel), ``"first"``
            (keep channel 0) or ``"keep"`` (all channels).
        offset: start reading this many seconds into the file.
        duration: read at most this many seconds (``None``: to the end).

    Returns:
        ``[C, T]`` float32 tensor; ``C == 1`` unless ``channels="keep"``.

    Raises:
        AudioError: naming the file, for missing/unreadable/empty/corrupt/non-audio files, zero-length
            audio, NaN or Inf samples, or a multichannel file with ``channels="reject"``.
    """
    p = Path(path)
    info = audio_info(p)
    if channels == "reject" and info.channels != 1:
        raise AudioError(
            p, f"wrong channel count: {info.channels} channels, expected mono (channels='reject')"
        )
    start = max(0, int(round(offset * info.sample_rate)))
    stop = None if duration is None else min(info.frames, start + int(math.ceil(duration * info.sample_rate)))
    if start >= info.frames:
        raise AudioError(p, f"offset {offset:.3f}s is past the end of the audio ({info.duration:.3f}s)")
    try:
        data, sr = sf.read(str(p), start=start, stop=stop, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise AudioError(p, f"cannot decode audio data ({_short(str(e).lower())})") from e
    if data.shape[0] == 0:
        raise AudioError(p, "zero-length audio (no decodable samples; truncated data?)")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        kind = "NaN" if np.isnan(data).any() else "Inf"
        raise AudioError(p, f"{kind} samples ({bad} non-finite values)")
    wav = torch.from_numpy(np.ascontiguousarray(data.T))
    wav = _apply_channels(p, wav, channels)
    if sample_rate is not None:
        wav = resample(wav, sr, sample_rate)
    return wav.contiguous()


_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".aiff": "AIFF", ".aif": "AIFF", ".au": "AU"}


def save_audio(
    path: str | os.PathLike,
    wav: torch.Tensor | np.ndarray,
    sample_rate: int,
    subtype: str | None = "PCM_16",
) -> Path:
    """Write audio atomically (temporary file in the same folder, then ``os.replace``).

    Args:
        path: destination; the format follows the extension (wav, flac, ogg, aiff, au).
        wav: ``[C, T]`` or ``[T]`` float audio in [-1, 1] (PCM subtypes are clipped).
        sample_rate: samples per second.
        subtype: ``"PCM_16"`` (default), ``"PCM_24"``, ``"FLOAT"``, ... or ``None`` for the format's default.

    Returns:
        the written path.
    """
    p = Path(path)
    if isinstance(wav, torch.Tensor):
        arr = wav.detach().to("cpu", torch.float32).numpy()
    else:
        arr = np.asarray(wav, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise ValueError(f"save_audio expects [C, T] or [T] audio, got shape {tuple(arr.shape)}")
    if subtype is not None and subtype.upper().startswith("PCM"):
        arr = np.clip(arr, -1.0, 1.0 - 1.0 / 32768.0)
    fmt = _FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ValueError(f"{p}: unsupported output extension {p.suffix!r}; use one of {sorted(_FORMATS)}")
    if fmt == "OGG" and subtype == "PCM_16":
        subtype = "VORBIS"
    with atomic_path(p) as tmp:
        sf.write(tmp, arr.T, int(sample_rate), subtype=subtype, format=fmt)
    return p
