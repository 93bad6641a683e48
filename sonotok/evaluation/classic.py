"""Classic speech codecs as baselines: Opus (``opus-tools``) and Codec2 (``codec2``), scored like sonotok's models.

Each baseline round-trips a file through the reference command-line programs, removes the codec's
constant delay (found by cross-correlation over at most ``max_lag_ms``), and is scored with the same metric
functions as :func:`sonotok.evaluation.codec.evaluate` (PESQ-WB, STOI, SI-SDR, mel distance). The bitrate
reported is the payload (Opus packets without the Ogg container and headers; Codec2's headerless bit
stream), not the file size.

* Opus: ``opusenc --bitrate B --hard-cbr --framesize 20`` at the input rate, decoded at that rate.
* Codec2: works at 8 kHz: the input is resampled to 8 kHz, coded with ``c2enc MODE`` / ``c2dec MODE`` and
  resampled back (so everything above 4 kHz is lost, as it is for a Codec2 user).

The programs are Debian packages (``apt-get install opus-tools codec2``; the Makefile installs them);
:func:`require_tools` fails with that hint when they are missing.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import soundfile as sf
import torch

from sonotok.data.audio import resample
from sonotok.errors import SonotokError

CODEC2_MODES = ("3200", "2400", "1600", "1400", "1300", "1200", "700C")
TOOLS = {"opus": ("opusenc", "opusdec"), "codec2": ("c2enc", "c2dec")}
DEBIAN = {"opus": "opus-tools", "codec2": "codec2"}


def require_tools(kinds: Sequence[str] = ("opus", "codec2")) -> None:
    """Raise a :class:`SonotokError` naming the missing programs and the Debian packages that have them."""
    missing = [(prog, DEBIAN[k]) for k in kinds for prog in TOOLS[k] if shutil.which(prog) is None]
    if missing:
        progs = ", ".join(p for p, _ in missing)
        pkgs = " ".join(sorted({d for _, d in missing}))
        raise SonotokError(f"classic-codec baselines need {progs}: install them with "
                           f"`apt-get install -y {pkgs}` (Debian/Ubuntu) and run again")


def _run(cmd: List[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SonotokError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")


def ogg_payload_bytes(path: str | Path) -> int:
    """Bytes of Opus packets in an Ogg Opus file, without page headers and the two header packets."""
    data = Path(path).read_bytes()
    pos, packets, total, current = 0, 0, 0, 0
    while pos + 27 <= len(data):
        if data[pos:pos + 4] != b"OggS":
            raise SonotokError(f"{path}: not an Ogg stream at byte {pos}")
        nseg = data[pos + 26]
        lacing = data[pos + 27: pos + 27 + nseg]
        pos += 27 + nseg
        for lace in lacing:
            current += lace
            pos += lace
            if lace < 255:  # a packet ends here
                if packets >= 2:  # OpusHead and OpusTags are not payload
                    total += current
                packets += 1
                current = 0
    return total


@dataclass
class ClassicCodec:
    """One baseline setting: ``kind`` ``"opus"`` (``setting`` = kbps) or ``"codec2"`` (``setting`` = mode)."""

    kind: str
    setting: str

    @property
    def name(self) -> str:
        return f"Opus {self.setting} kbps" if self.kind == "opus" else f"Codec2 {self.setting}"

    @property
    def nominal_kbps(self) -> float:
        return float(self.setting) if self.kind == "opus" else (0.7 if self.setting == "700C" else int(self.setting) / 1000)

    def roundtrip(self, wav: np.ndarray, sample_rate: int) -> Tuple[np.ndarray, int]:
        """``wav [T]`` float -> (decoded ``[T']`` at ``sample_rate``, payload bits)."""
        require_tools([self.kind])
        with tempfile.TemporaryDirectory(prefix="sonotok-classic-") as tmp:
            t = Path(tmp)
            if self.kind == "opus":
                sf.write(t / "in.wav", wav, sample_rate, subtype="PCM_16")
                _run(["opusenc", "--quiet", "--bitrate", str(self.setting), "--hard-cbr", "--framesize", "20",
                      str(t / "in.wav"), str(t / "out.opus")])
                _run(["opusdec", "--quiet", "--rate", str(sample_rate), str(t / "out.opus"), str(t / "out.wav")])
                out, _ = sf.read(t / "out.wav", dtype="float32")
                return (out.mean(1) if out.ndim == 2 else out), 8 * ogg_payload_bytes(t / "out.opus")
            if self.setting not in CODEC2_MODES:
                raise ValueError(f"Codec2 mode {self.setting!r} is not one of {CODEC2_MODES}")
            x8 = resample(torch.from_numpy(wav).float()[None], sample_rate, 8000)[0].numpy()
            pcm = (np.clip(x8, -1, 1) * 32767).round().astype("<i2")
            (t / "in.raw").write_bytes(pcm.tobytes())
            _run(["c2enc", self.setting, str(t / "in.raw"), str(t / "out.bit")])
            _run(["c2dec", self.setting, str(t / "out.bit"), str(t / "out.raw")])
            y8 = np.frombuffer((t / "out.raw").read_bytes(), dtype="<i2").astype(np.float32) / 32768.0
            y = resample(torch.from_numpy(y8)[None], 8000, sample_rate)[0].numpy()
            return y, 8 * (t / "out.bit").stat().st_size


def parse_classic(spec: str) -> ClassicCodec:
    """``"opus:6"`` / ``"codec2:3200"`` -> :class:`ClassicCodec`."""
    kind, _, setting = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in TOOLS or not setting:
        raise ValueError(f"classic codec {spec!r}: use opus:<kbps> or codec2:<mode> ({', '.join(CODEC2_MODES)})")
    return ClassicCodec(kind, setting.strip())


def align(ref: np.ndarray, out: np.ndarray, max_lag: int) -> np.ndarray:
    """``out`` shifted by the lag in ``[-max_lag, max_lag]`` that maximises its correlation with ``ref``,
    cropped or zero-padded to ``len(ref)``."""
    n = len(ref)
    size = 1 << int(np.ceil(np.log2(n + len(out) + 1)))
    xc = np.fft.irfft(np.fft.rfft(out, size) * np.conj(np.fft.rfft(ref, size)), size)
    lags = np.r_[0:max_lag + 1, -max_lag:0]
    lag = int(lags[np.argmax(xc[lags])])
    shifted = out[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag, out.dtype), out])
    return np.pad(shifted[:n], (0, max(0, n - len(shifted[:n]))))


def evaluate_classic(codec: ClassicCodec, files: Sequence[str | Path], sample_rate: int = 16000,
                     max_seconds: float | None = None, max_lag_ms: float = 100.0, extra_metrics=None) -> Dict:
    """Round-trip ``files`` (read at ``sample_rate``, mono) through ``codec`` and score them.

    Returns:
        ``{"summary": {...}, "files": [...]}`` with the keys of :func:`sonotok.evaluation.codec.evaluate`'s
        quality metrics plus ``bitrate_kbps`` (measured payload), ``nominal_kbps``, ``delay_ms`` and
        ``x_realtime`` (whole round trip, including the programs' start-up); ``extra_metrics`` as in
        :func:`sonotok.evaluation.codec.evaluate`.
    """
    from sonotok.data.audio import load_audio
    from sonotok.metrics.quality import mel_distance, pesq_wb, si_sdr, stoi

    rows, bits, seconds, wall = [], 0, 0.0, 0.0
    max_lag = int(max_lag_ms * sample_rate / 1000)
    for f in files:
        wav = load_audio(f, sample_rate, channels="downmix")[0]
        if max_seconds is not None:
            wav = wav[: int(max_seconds * sample_rate)]
        x = wav.numpy().astype(np.float32)
        t0 = time.perf_counter()
        y_raw, nbits = codec.roundtrip(x, sample_rate)
        wall += time.perf_counter() - t0
        y = align(x, y_raw.astype(np.float32), max_lag)
        ref, est = torch.from_numpy(x), torch.from_numpy(y)
        dur = len(x) / sample_rate
        bits += nbits
        seconds += dur
        rows.append({"path": str(f), "duration": dur, "pesq_wb": float(pesq_wb(ref, est, sample_rate)),
                     "stoi": float(stoi(ref, est, sample_rate)), "si_sdr": float(si_sdr(ref, est)),
                     "mel_distance": float(mel_distance(ref, est, sample_rate)), "kbps": nbits / dur / 1000,
                     **(extra_metrics(ref, est, sample_rate) if extra_metrics is not None else {})})
    if not rows:
        raise SonotokError("evaluate_classic: no files given")
    keys = ("pesq_wb", "stoi", "si_sdr", "mel_distance", *(extra_metrics.keys() if hasattr(extra_metrics, "keys") else ()))
    mean = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
    summary = {"name": codec.name, "num_files": len(rows), "total_seconds": seconds, **mean,
               "bitrate_kbps": bits / seconds / 1000, "nominal_kbps": codec.nominal_kbps,
               "x_realtime": seconds / wall if wall > 0 else float("inf")}
    return {"summary": summary, "files": rows}
