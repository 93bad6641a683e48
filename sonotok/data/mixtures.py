"""Speech mixtures for separation: made on the fly from a corpus manifest, or read from a mixture folder.

* :class:`MixtureDataset`: ``S`` (2 or 3) utterances of *different* speakers from a JSONL manifest
  (``sonotok corpus build``), each normalised to unit RMS and scaled to a random relative level
  (uniform in ``[-max_relative_db, +max_relative_db]`` w.r.t. the first source, as WSJ0-2mix's
  0-5 dB), optionally plus noise: music (Asterisk ``asterisk-moh-opsound-g722``, decoded with the
  corpus' G.722 helper) or synthetic white/pink/brown noise at a random SNR. Each item is a pure function
  of ``(seed, epoch, index)``; with ``fixed=True`` of ``(seed, index)`` only: a reproducible test set.
* :class:`MixtureFolderDataset`: Libri2Mix / WSJ0-2mix style folders ``mix/ s1/ s2/ [s3/] [noise/]``
  (Libri2Mix's ``mix_clean/`` / ``mix_both/`` are found too); files matched by name. Missing folders
  and files raise :class:`MixtureError` naming them.
* :class:`MixtureDataModule`: Lightning loaders for either kind (a ``.jsonl`` path or a folder).

Items are dicts ``{"mix": [1, T], "sources": [S, T], "noise": [1, T]}`` (noise zeros when absent);
``mix == sources.sum(0) + noise`` exactly for generated mixtures.
"""

from __future__ import annotations

import functools
import glob
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
import torchaudio.functional as AF
from torch.utils.data import DataLoader, Dataset

from sonotok.data.audio import is_audio_path, load_audio, resample
from sonotok.data.dataset import EpochSampler, _seed_for
from sonotok.data.sources import read_jsonl
from sonotok.errors import AudioError, SonotokError

MUSIC_GLOB = "/usr/share/asterisk/moh/*.g722"
MIX_DIRS = ("mix", "mix_clean", "mix_both", "mix_single")
LAYOUT_HINT = "Libri2Mix / WSJ0-2mix layout: mix/ s1/ s2/ [s3/] [noise/] with matching file names"


class MixtureError(SonotokError):
    """A mixture source (manifest or folder) is missing or unusable."""


@functools.lru_cache(maxsize=4)
def load_music(sample_rate: int, pattern: str = MUSIC_GLOB) -> tuple:
    """Decode the Asterisk music-on-hold G.722 files (16 kHz) and resample; cached per process."""
    from sonotok.data.corpus.sources import decode_g722

    out = []
    for f in sorted(glob.glob(pattern)):
        x = torch.from_numpy(decode_g722(Path(f)))
        if x.numel() == 0:
            continue
        if sample_rate != 16000:
            x = resample(x.view(1, -1), 16000, sample_rate).view(-1)
        out.append(x)
    return tuple(out)


def synthetic_noise(rng: np.random.Generator, length: int, color: str) -> np.ndarray:
    """White, pink (1/f) or brown (1/f^2) noise of unit RMS."""
    white = rng.standard_normal(length)
    if color != "white":
        spec = np.fft.rfft(white)
        f = np.arange(spec.shape[0], dtype=np.float64)
        f[0] = 1.0
        spec = spec / (np.sqrt(f) if color == "pink" else f)
        white = np.fft.irfft(spec, n=length)
    return (white / (np.sqrt(np.mean(white**2)) + 1e-12)).astype(np.float32)


def _rms(x: torch.Tensor) -> float:
    return float(x.pow(2).mean().sqrt())


SPEAKER_WEIGHTINGS = ("uniform", "sqrt", "duration")
ACTIVE_DB = 30.0  # a 20 ms frame is active when within this many dB of its source's loudest frame


def activity(x: torch.Tensor, sample_rate: int, below_peak_db: float = ACTIVE_DB) -> torch.Tensor:
    """Active 20 ms frames of ``x [S, T]`` (or ``[T]``): ``[S, T // frame]`` booleans, a frame active when its
    energy is within ``below_peak_db`` of that row's loudest frame (a silent row has none active)."""
    x = x.reshape(-1, x.shape[-1])
    frame = max(1, int(sample_rate) // 50)
    n = x.shape[-1] // frame
    if n == 0:
        return torch.zeros(x.shape[0], 0, dtype=torch.bool)
    e = x[:, : n * frame].reshape(x.shape[0], n, frame).pow(2).mean(-1)
    db = 10 * torch.log10(e + 1e-20)
    peak = db.max(-1, keepdim=True).values
    return (db > peak - below_peak_db) & (e > 0) & (peak > -200)


def overlap_fraction(sources: torch.Tensor, sample_rate: int) -> float:
    """Fraction of the 20 ms frames of ``sources [S, T]`` in which every source is active (:func:`activity`)."""
    a = activity(sources, sample_rate)
    return float(a.all(0).float().mean()) if a.shape[-1] else 0.0


@functools.lru_cache(maxsize=65536)
def speech_span(path: str, sample_rate: int, trim_db: float) -> tuple:
    """``(start, end)`` seconds of the part of a file between its first and last voiced 20 ms frame
    (:func:`sonotok.data.corpus.segment.trim_silence` with ``trim_db``, 20 ms kept either side); cached."""
    from sonotok.data.corpus.segment import trim_silence

    x = load_audio(path, sample_rate, "downmix")[0].numpy()
    a, b = trim_silence(x, sample_rate, pad=0.02, rel_threshold_db=trim_db, abs_threshold_db=-200.0)
    if b <= a:  # nothing voiced: keep the whole file (its RMS normalisation is then the caller's business)
        return 0.0, x.shape[-1] / sample_rate
    return a / sample_rate, b / sample_rate


class MixtureDataset(Dataset):
    """On-the-fly speech mixtures of different speakers from a JSONL manifest.

    Args:
        manifest: JSONL (``path`` relative to the manifest, ``duration``, ``speaker``).
        num_sources: speakers per mixture (2 or 3; needs that many speakers in the manifest).
        sample_rate: output rate.
        segment_seconds: mixture length; shorter utterances are zero-padded at a random position.
        length: number of mixtures per epoch (the dataset is virtual).
        max_relative_db: level of sources 2..S relative to source 1, uniform in ``[-x, x]`` dB.
        noise_prob: probability that a mixture gets noise.
        noise_snr_db: ``[low, high]`` speech-to-noise ratio range (dB).
        music_prob: share of noisy mixtures whose noise is music (the rest: synthetic noise).
        music_glob: music files (G.722 at 16 kHz, as shipped by Asterisk).
        seed: seed.
        fixed: items depend on ``(seed, index)`` only (a fixed test set); otherwise on the epoch too.
        target_rms: mixture RMS after scaling (peaks are then kept below 0.9).
        fill: each source is a speaker *track*: utterances of that speaker back to back (pauses up to
            ``max_pause`` s) filling the whole segment, so the speakers overlap throughout (as WSJ0-2mix /
            Libri2Mix "min" mixtures do). ``False``: one utterance per source, zero-padded at a random
            position when shorter than the segment (short prompts then barely overlap: easy for oracles).
        max_pause: longest pause between the utterances of a track (s).
        bandwidth: keep only manifest rows with this ``bandwidth``; ``"auto"`` (default): ``"wideband"`` when
            ``sample_rate`` is above 8 kHz (8 kHz telephone sources would leave the upper band empty), every
            row at 8 kHz; ``None``: all rows.
        reverb_prob: probability that each source is convolved with a simulated room
            (:func:`sonotok.data.augment.rir_bank`; the reverberant source is the target).
        avoid_same_voice: never mix two speaker ids of one language from different sources (rows with
            ``language`` and ``source``, as the corpus writes them): packages that do not name their voices
            may hold one volunteer under several ids (Tux Paint, KLettres, KTuberling). A draw that cannot
            satisfy it (too few speakers) falls back to any distinct ids.
        speaker_weighting: how speakers are drawn: ``"uniform"`` (every id equally often, whatever its amount of
            audio), ``"sqrt"`` (in proportion to the square root of its total duration) or ``"duration"``
            (in proportion to it). The many-voice corpus has 49 of its 66 train ids under 5 minutes each
            (7% of the audio); uniform draws put one of them in 95% of the mixtures.
        min_speaker_seconds: leave out speakers with less audio than this in the manifest (``0``: keep all;
            at least ``num_sources`` must remain).
        trim_db: trim each utterance's leading and trailing silence (20 ms frames more than ``trim_db``
            below its loudest, :func:`sonotok.data.corpus.segment.trim_silence`) before it is placed in a
            track, so pauses are only the drawn ones (``None``: no trimming). The spans are read from the audio
            once per file and cached, so :meth:`describe` then reads audio.
        min_overlap: redraw a mixture (up to ``max_redraws`` times, then keep the best draw) until every
            source is active (a 20 ms frame within 30 dB of that source's loudest) together over at least
            this fraction of the segment (``0``: no check). Redraws are seeded by ``(seed, epoch, index,
            attempt)``, so items stay a pure function of ``(seed, epoch, index)``.
        max_redraws: see ``min_overlap``.
        speed_range: ``(low, high)``: each source is played faster or slower by a factor drawn uniformly in
            it (rounded to 0.01; tempo and pitch change together, ``torchaudio.functional.resample``), as
            the speed perturbation of dynamic-mixing separation recipes: new voices from the ones there are.
            ``None``: off.
        eq_db: each source gets a random low shelf (250 Hz) and high shelf (1.5 kHz) of gains uniform in
            ``[-eq_db, eq_db]`` (``torchaudio.functional.bass_biquad`` / ``treble_biquad``), so a speaker's
            recording chain (spectral balance) stops telling the sources apart; ``0``: off.
    """

    def __init__(self, manifest: str | os.PathLike, num_sources: int = 2, sample_rate: int = 8000,
                 segment_seconds: float = 4.0, length: int = 10000, max_relative_db: float = 5.0,
                 noise_prob: float = 0.0, noise_snr_db: Sequence[float] = (5.0, 20.0), music_prob: float = 0.5,
                 music_glob: str = MUSIC_GLOB, seed: int = 0, fixed: bool = False, target_rms: float = 0.1,
                 fill: bool = True, max_pause: float = 0.3, bandwidth: str | None = "auto",
                 reverb_prob: float = 0.0, avoid_same_voice: bool = True, speaker_weighting: str = "uniform",
                 min_speaker_seconds: float = 0.0, trim_db: float | None = None, min_overlap: float = 0.0,
                 max_redraws: int = 10, speed_range: Sequence[float] | None = None, eq_db: float = 0.0):
        path = Path(manifest)
        if not path.is_file():
            raise MixtureError(f"{path}: no such manifest (build one with `sonotok corpus build`)")
        try:
            rows = read_jsonl(path)
        except AudioError as e:
            raise MixtureError(str(e)) from None
        if bandwidth == "auto":
            bandwidth = "wideband" if int(sample_rate) > 8000 else None
        if bandwidth is not None:
            rows = [r for r in rows if r.get("bandwidth", bandwidth) == bandwidth]
        by_spk: Dict[str, List[dict]] = defaultdict(list)
        for r in rows:
            if "speaker" not in r or "path" not in r:
                raise MixtureError(f"{path}: every row needs 'path' and 'speaker' (got keys {sorted(r)})")
            r = dict(r)
            r["abspath"] = str((path.parent / r["path"]).resolve())
            by_spk[str(r["speaker"])].append(r)
        if num_sources < 1:
            raise MixtureError(f"num_sources must be >= 1, got {num_sources}")
        if speaker_weighting not in SPEAKER_WEIGHTINGS:
            raise MixtureError(f"speaker_weighting must be one of {', '.join(SPEAKER_WEIGHTINGS)}, "
                               f"got {speaker_weighting!r}")
        if not 0.0 <= float(min_overlap) < 1.0:
            raise MixtureError(f"min_overlap is a fraction of the segment in [0, 1), got {min_overlap}")
        if trim_db is not None and float(trim_db) <= 0:
            raise MixtureError(f"trim_db must be a positive number of dB below the loudest frame (or None), got {trim_db}")
        if speed_range is not None:
            speed_range = tuple(float(v) for v in speed_range)
            if len(speed_range) != 2 or not 0.5 <= speed_range[0] <= speed_range[1] <= 2.0:
                raise MixtureError(f"speed_range must be (low, high) with 0.5 <= low <= high <= 2, got {speed_range}")
        if float(eq_db) < 0:
            raise MixtureError(f"eq_db must be >= 0 (the largest shelf gain in dB), got {eq_db}")
        seconds = {k: sum(float(r.get("duration") or 0.0) for r in rs) for k, rs in by_spk.items()}
        if min_speaker_seconds > 0:
            kept = {k: rs for k, rs in by_spk.items() if seconds[k] >= float(min_speaker_seconds)}
            if len(kept) < num_sources:
                raise MixtureError(f"{path}: min_speaker_seconds={min_speaker_seconds} leaves {len(kept)} of "
                                   f"{len(by_spk)} speakers; {num_sources}-speaker mixtures need {num_sources}")
            by_spk = defaultdict(list, kept)
        if len(by_spk) < num_sources:
            raise MixtureError(f"{path}: {num_sources}-speaker mixtures need {num_sources} different speakers, "
                               f"the manifest has {len(by_spk)} ({', '.join(sorted(by_spk))})")
        self.manifest = str(path)
        self.speakers = sorted(by_spk)
        self.rows = {k: by_spk[k] for k in self.speakers}
        self.num_sources = int(num_sources)
        self.sample_rate = int(sample_rate)
        self.segment_seconds = float(segment_seconds)
        self.segment_length = int(round(segment_seconds * sample_rate))
        self.length = int(length)
        self.max_relative_db = float(max_relative_db)
        self.noise_prob = float(noise_prob)
        self.noise_snr_db = tuple(float(v) for v in noise_snr_db)
        self.music_prob = float(music_prob)
        self.music_glob = music_glob
        self.seed = int(seed)
        self.fixed = bool(fixed)
        self.target_rms = float(target_rms)
        self.fill = bool(fill)
        self.max_pause = float(max_pause)
        self.bandwidth = bandwidth
        self.reverb_prob = float(reverb_prob)
        self.speaker_weighting = speaker_weighting
        self.min_speaker_seconds = float(min_speaker_seconds)
        self.trim_db = None if trim_db is None else float(trim_db)
        self.min_overlap = float(min_overlap)
        self.max_redraws = max(0, int(max_redraws))
        self.speed_range = speed_range
        self.eq_db = float(eq_db)
        self.speaker_seconds = {k: seconds[k] for k in self.speakers}
        w = np.array([{"uniform": 1.0, "sqrt": np.sqrt(seconds[k]), "duration": seconds[k]}[speaker_weighting]
                      for k in self.speakers], dtype=np.float64)
        if speaker_weighting != "uniform" and not (w > 0).all():
            raise MixtureError(f"{path}: speaker_weighting={speaker_weighting!r} needs a positive 'duration' for every "
                               f"speaker; no audio listed for {', '.join(k for k, v in zip(self.speakers, w) if v <= 0)}")
        self._weights = None if speaker_weighting == "uniform" else w
        # speaker -> (language, source family) where known: ids that may be one volunteer conflict
        voice = {}
        for k, rs in self.rows.items():
            r = rs[0]
            if r.get("language") and r.get("source"):
                voice[k] = (str(r["language"]), str(r["source"]).split(":")[0])
        self._voice = voice if avoid_same_voice else {}
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rng(self, index: int, epoch: int, attempt: int = 0) -> np.random.Generator:
        seed = _seed_for(self.seed, 0 if self.fixed else epoch, index)
        if attempt:
            seed = _seed_for(seed, attempt, index)
        return np.random.default_rng(seed)

    def _utterance(self, row: dict) -> tuple:
        """``(start, seconds)`` of an utterance's usable part: all of it, or its trimmed span (``trim_db``)."""
        dur = float(row.get("duration") or 0.0)
        if self.trim_db is None:
            return 0.0, dur
        a, b = speech_span(row["abspath"], self.sample_rate, self.trim_db)
        return a, max(0.0, b - a)

    def describe(self, index: int, epoch: int | None = None, attempt: int = 0) -> Dict[str, Any]:
        """The recipe of mixture ``index``: speakers, files, offsets, levels, noise (no audio read unless
        ``trim_db`` is set; ``attempt`` > 0: the redraws of ``min_overlap``)."""
        rng = self._rng(int(index), self.epoch if epoch is None else int(epoch), int(attempt))
        spk = self._draw_speakers(rng)
        srcs = []
        seg = self.segment_seconds
        for k, s in enumerate(spk):
            rows = self.rows[s]
            pieces = []
            pos = 0.0
            speed = 1.0 if self.speed_range is None else round(float(rng.uniform(*self.speed_range)), 2)
            seg = self.segment_seconds * speed  # the track is laid out in the source's own time
            while pos < seg - 0.05:
                row = rows[int(rng.integers(len(rows)))]
                start, dur = self._utterance(row)
                if self.fill:
                    # a speaker track: utterances of this speaker back to back (short pauses) fill the segment
                    offset = float(rng.uniform(0, max(0.0, dur - (seg - pos)))) if not pieces else 0.0
                    take = min(dur - offset, seg - pos)
                    pieces.append({"path": row["abspath"], "offset": start + offset, "place": pos, "seconds": take})
                    pos += take + float(rng.uniform(0.0, self.max_pause))
                else:
                    slack = dur - seg
                    if slack > 0:
                        offset, place = float(rng.uniform(0, slack)), 0.0
                    else:
                        offset, place = 0.0, float(rng.uniform(0, -slack))
                    pieces.append({"path": row["abspath"], "offset": start + offset, "place": place,
                                   "seconds": min(dur, seg)})
                    break
                if dur <= 0:
                    break
            gain = 0.0 if k == 0 else float(rng.uniform(-self.max_relative_db, self.max_relative_db))
            src = {"speaker": s, "pieces": pieces, "gain_db": gain}
            if self.reverb_prob > 0 and rng.random() < self.reverb_prob:
                src["reverb_seed"] = int(rng.integers(2**31))
            if speed != 1.0:
                src["speed"] = speed
            if self.eq_db > 0:
                src["eq_db"] = [float(rng.uniform(-self.eq_db, self.eq_db)) for _ in range(2)]
            srcs.append(src)
        noise: Dict[str, Any] | None = None
        if self.noise_prob > 0 and rng.random() < self.noise_prob:
            snr = float(rng.uniform(*self.noise_snr_db))
            if rng.random() < self.music_prob and load_music(self.sample_rate, self.music_glob):
                music = load_music(self.sample_rate, self.music_glob)
                track = int(rng.integers(len(music)))
                start = int(rng.integers(max(1, music[track].numel() - self.segment_length)))
                noise = {"kind": "music", "track": track, "start": start, "snr_db": snr}
            else:
                color = ["white", "pink", "brown"][int(rng.integers(3))]
                noise = {"kind": color, "seed": int(rng.integers(2**31)), "snr_db": snr}
        recipe = {"index": int(index), "speakers": spk, "sources": srcs, "noise": noise}
        if attempt:
            recipe["attempt"] = int(attempt)
        return recipe

    def _conflict(self, a: str, b: str) -> bool:
        va, vb = self._voice.get(a), self._voice.get(b)
        return va is not None and vb is not None and va[0] == vb[0] and va[1] != vb[1]

    def _draw_speakers(self, rng: np.random.Generator) -> List[str]:
        w = self._weights
        if not self._voice:  # nothing known about voices: one draw of distinct ids
            p = None if w is None else w / w.sum()
            return [self.speakers[i] for i in rng.choice(len(self.speakers), self.num_sources, replace=False, p=p)]
        chosen: List[str] = []
        index = {s: i for i, s in enumerate(self.speakers)}
        for _ in range(self.num_sources):
            free = [s for s in self.speakers if s not in chosen]
            ok = [s for s in free if not any(self._conflict(s, c) for c in chosen)]
            pool = ok or free
            if w is None:
                chosen.append(pool[int(rng.integers(len(pool)))])
            else:
                pw = np.array([w[index[s]] for s in pool])
                chosen.append(pool[int(rng.choice(len(pool), p=pw / pw.sum()))])
        return chosen

    def _read(self, src: Dict[str, Any]) -> torch.Tensor:
        speed = float(src.get("speed", 1.0))
        n = int(round(self.segment_length * speed))
        out = torch.zeros(n)
        for pc in src["pieces"]:
            start = int(round(pc["place"] * self.sample_rate))
            if start >= n:
                continue
            wav = load_audio(pc["path"], self.sample_rate, "downmix", offset=pc["offset"],
                             duration=pc["seconds"] + 0.01)[0]
            wav = wav[: min(int(round(pc["seconds"] * self.sample_rate)), n)]
            start = min(start, n - wav.numel())
            out[start : start + wav.numel()] += wav
        if speed != 1.0:  # play `speed` times faster: n samples become segment_length
            out = AF.resample(out, int(round(100 * speed)), 100)
        m = self.segment_length
        out = torch.nn.functional.pad(out[:m], (0, max(0, m - out.numel())))
        if src.get("eq_db") is not None:
            low, high = src["eq_db"]
            out = AF.bass_biquad(out, self.sample_rate, low, central_freq=250.0)
            out = AF.treble_biquad(out, self.sample_rate, high, central_freq=min(1500.0, 0.4 * self.sample_rate))
        return out

    def render(self, recipe: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        """Mix the audio a recipe from :meth:`describe` names."""
        n = self.segment_length
        sources = []
        for src in recipe["sources"]:
            x = self._read(src)
            if src.get("reverb_seed") is not None:
                from sonotok.data.augment import Augmentation

                x = Augmentation().reverb(x[None], self.sample_rate, np.random.default_rng(src["reverb_seed"]))[0]
            r = _rms(x)
            if r > 0:
                x = x / r * 10 ** (src["gain_db"] / 20)
            sources.append(x)
        s = torch.stack(sources)
        speech = s.sum(0)
        noise = torch.zeros(n)
        nz = recipe["noise"]
        if nz is not None:
            if nz["kind"] == "music":
                m = load_music(self.sample_rate, self.music_glob)[nz["track"]][nz["start"] : nz["start"] + n]
                noise[: m.numel()] = m
            else:
                noise = torch.from_numpy(synthetic_noise(np.random.default_rng(nz["seed"]), n, nz["kind"]))
            nr, sr_ = _rms(noise), _rms(speech)
            if nr > 0 and sr_ > 0:
                noise = noise / nr * sr_ * 10 ** (-nz["snr_db"] / 20)
        mix = speech + noise
        scale = self.target_rms / max(_rms(mix), 1e-8)
        peak = float(mix.abs().max()) * scale
        if peak > 0.9:
            scale *= 0.9 / peak
        s, noise = s * scale, noise * scale
        return {"mix": (s.sum(0) + noise).unsqueeze(0), "sources": s, "noise": noise.unsqueeze(0)}

    def __getitem__(self, index: int | tuple) -> Dict[str, torch.Tensor]:
        if isinstance(index, (tuple, list)):
            index, epoch = int(index[0]), int(index[1])
        else:
            index, epoch = int(index), self.epoch
        item = self.render(self.describe(index, epoch))
        if self.min_overlap <= 0:
            return item
        best, best_ov = item, overlap_fraction(item["sources"], self.sample_rate)
        for attempt in range(1, self.max_redraws + 1):
            if best_ov >= self.min_overlap:
                break
            item = self.render(self.describe(index, epoch, attempt))
            ov = overlap_fraction(item["sources"], self.sample_rate)
            if ov > best_ov:
                best, best_ov = item, ov
        return best


def fixed_test_set(manifest: str | os.PathLike, num_mixtures: int = 100, num_sources: int = 2,
                   sample_rate: int = 8000, segment_seconds: float = 4.0, seed: int = 1234,
                   **kwargs: Any) -> MixtureDataset:
    """The reproducible test mixtures: ``fixed=True`` over a held-out manifest (e.g. ``test.jsonl``)."""
    return MixtureDataset(manifest, num_sources, sample_rate, segment_seconds, length=num_mixtures, seed=seed,
                          fixed=True, **kwargs)


class MixtureFolderDataset(Dataset):
    """Libri2Mix / WSJ0-2mix style mixture folders.

    Args:
        root: folder holding ``mix/`` (or ``mix_clean/``, ``mix_both/``, ``mix_single/``), ``s1/`` ...
            ``sS/`` and optionally ``noise/``.
        num_sources: ``S``.
        sample_rate: output rate (files are resampled when they differ).
        segment_seconds: random crops of this length (zero-padded when shorter); ``None``: whole files.
        mix_dir: the mixture folder name (default: the first of ``mix, mix_clean, mix_both, mix_single``).
        use_noise: read ``noise/`` too (required to exist then).
        seed: crop seed.
        max_seconds: with ``segment_seconds=None``, truncate files to this length.

    Raises:
        MixtureError: naming the missing folder or file.
    """

    def __init__(self, root: str | os.PathLike, num_sources: int = 2, sample_rate: int = 8000,
                 segment_seconds: float | None = None, mix_dir: str | None = None, use_noise: bool = False,
                 seed: int = 0, max_seconds: float | None = None):
        root = Path(root)
        if not root.is_dir():
            raise MixtureError(f"{root}: no such folder ({LAYOUT_HINT})")
        if mix_dir is None:
            found = [d for d in MIX_DIRS if (root / d).is_dir()]
            if not found:
                raise MixtureError(f"{root}: missing mixture folder (none of {', '.join(d + '/' for d in MIX_DIRS)}; "
                                   f"{LAYOUT_HINT})")
            mix_dir = found[0]
        elif not (root / mix_dir).is_dir():
            raise MixtureError(f"{root / mix_dir}: missing folder ({LAYOUT_HINT})")
        src_dirs = [f"s{i + 1}" for i in range(num_sources)] + (["noise"] if use_noise else [])
        missing = [d for d in src_dirs if not (root / d).is_dir()]
        if missing:
            raise MixtureError(f"{root}: missing folder(s) {', '.join(d + '/' for d in missing)} "
                               f"(a {num_sources}-source set needs {mix_dir}/ {' '.join(d + '/' for d in src_dirs)}; "
                               f"{LAYOUT_HINT})")
        names = sorted(p.name for p in (root / mix_dir).iterdir() if is_audio_path(p) and not p.name.startswith("."))
        if not names:
            raise MixtureError(f"{root / mix_dir}: no audio files")
        for d in src_dirs:
            have = {p.name for p in (root / d).iterdir()}
            lost = [n for n in names if n not in have]
            if lost:
                more = f" and {len(lost) - 1} more" if len(lost) > 1 else ""
                raise MixtureError(f"{root / d / lost[0]}: missing (source of {root / mix_dir / lost[0]}){more}")
        self.root = root
        self.mix_dir = mix_dir
        self.names = names
        self.src_dirs = src_dirs[:num_sources]
        self.use_noise = use_noise
        self.num_sources = int(num_sources)
        self.sample_rate = int(sample_rate)
        self.segment_seconds = segment_seconds
        self.seed = int(seed)
        self.max_seconds = max_seconds
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.names)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int | tuple) -> Dict[str, torch.Tensor]:
        if isinstance(index, (tuple, list)):
            index, epoch = int(index[0]), int(index[1])
        else:
            index, epoch = int(index), self.epoch
        name = self.names[index]
        paths = [self.root / self.mix_dir / name] + [self.root / d / name for d in self.src_dirs]
        if self.use_noise:
            paths.append(self.root / "noise" / name)
        wavs = [load_audio(p, self.sample_rate, "downmix")[0] for p in paths]
        lengths = {w.numel() for w in wavs}
        if len(lengths) != 1:
            raise MixtureError(f"{paths[0]}: mixture and sources differ in length "
                               f"({', '.join(f'{p.parent.name}={w.numel()}' for p, w in zip(paths, wavs))})")
        t = wavs[0].numel()
        if self.segment_seconds is not None:
            n = int(round(self.segment_seconds * self.sample_rate))
            if t > n:
                rng = np.random.default_rng(_seed_for(self.seed, epoch, index))
                start = int(rng.integers(t - n + 1))
                wavs = [w[start : start + n] for w in wavs]
            else:
                wavs = [torch.nn.functional.pad(w, (0, n - t)) for w in wavs]
        elif self.max_seconds is not None:
            n = int(round(self.max_seconds * self.sample_rate))
            wavs = [w[:n] for w in wavs]
        noise = wavs[-1].unsqueeze(0) if self.use_noise else torch.zeros_like(wavs[0]).unsqueeze(0)
        return {"mix": wavs[0].unsqueeze(0), "sources": torch.stack(wavs[1 : 1 + self.num_sources]), "noise": noise}


def collate_mixtures(batch: Sequence[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Zero-pad items to the longest; adds ``lengths [B]``."""
    lengths = torch.tensor([b["mix"].shape[-1] for b in batch], dtype=torch.long)
    t = int(lengths.max())
    out = {k: torch.stack([torch.nn.functional.pad(b[k], (0, t - b[k].shape[-1])) for b in batch])
           for k in ("mix", "sources", "noise")}
    out["lengths"] = lengths
    return out


class MixtureDataModule(pl.LightningDataModule):
    """Train/valid loaders of mixtures: a ``.jsonl`` manifest (on-the-fly mixtures) or a mixture folder.

    Args:
        train: manifest or folder for training.
        valid: manifest (a fixed, seeded set is drawn from it) or folder; ``None`` for no validation.
        num_sources: sources per mixture.
        sample_rate: model rate.
        segment_seconds: training crop length.
        batch_size: training batch size.
        num_workers: loader workers.
        epoch_size: generated mixtures per training epoch.
        valid_size: fixed validation mixtures (generated) / files (folder: first ``valid_size``).
        valid_segment_seconds: validation mixture length.
        max_relative_db, noise_prob, noise_snr_db, music_prob, bandwidth, reverb_prob: see :class:`MixtureDataset`.
        seed: seed of the training mixtures (validation uses ``seed + 1``).
        speaker_weighting, min_speaker_seconds, trim_db, min_overlap, max_redraws, speed_range, eq_db: the
            training-mixture recipe
            (:class:`MixtureDataset`); they apply to the **training** mixtures only, so the validation set stays
            the benchmark's recipe (the one ``fixed_test_set`` draws) and its SI-SNRi stays comparable.
    """

    def __init__(self, train: str, valid: str | None = None, num_sources: int = 2, sample_rate: int = 8000,
                 segment_seconds: float = 4.0, batch_size: int = 4, num_workers: int = 0, epoch_size: int = 10000,
                 valid_size: int = 32, valid_segment_seconds: float = 4.0, max_relative_db: float = 5.0,
                 noise_prob: float = 0.0, noise_snr_db: Sequence[float] = (5.0, 20.0), music_prob: float = 0.5,
                 seed: int = 0, pin_memory: bool = False, bandwidth: str | None = "auto", reverb_prob: float = 0.0,
                 speaker_weighting: str = "uniform", min_speaker_seconds: float = 0.0, trim_db: float | None = None,
                 min_overlap: float = 0.0, max_redraws: int = 10, speed_range: Sequence[float] | None = None,
                 eq_db: float = 0.0):
        super().__init__()
        self.train_source, self.valid_source = str(train), (None if valid is None else str(valid))
        self.num_sources = int(num_sources)
        self.sample_rate = int(sample_rate)
        self.segment_seconds = float(segment_seconds)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.epoch_size = int(epoch_size)
        self.valid_size = int(valid_size)
        self.valid_segment_seconds = float(valid_segment_seconds)
        self.mix_kwargs = dict(max_relative_db=max_relative_db, noise_prob=noise_prob,
                               noise_snr_db=tuple(noise_snr_db), music_prob=music_prob, bandwidth=bandwidth,
                               reverb_prob=reverb_prob)
        self.train_kwargs = dict(speaker_weighting=speaker_weighting, min_speaker_seconds=min_speaker_seconds,
                                 trim_db=trim_db, min_overlap=min_overlap, max_redraws=max_redraws,
                                 speed_range=None if speed_range is None else tuple(speed_range), eq_db=eq_db)
        self.seed = int(seed)
        self.pin_memory = pin_memory
        self.train_dataset: Dataset | None = None
        self.valid_dataset: Dataset | None = None

    def _make(self, source: str, train: bool) -> Dataset:
        if Path(source).is_dir():
            ds = MixtureFolderDataset(source, self.num_sources, self.sample_rate,
                                      segment_seconds=self.segment_seconds if train else None, seed=self.seed,
                                      max_seconds=None if train else self.valid_segment_seconds)
            if not train:
                ds.names = ds.names[: self.valid_size]
            return ds
        if train:
            return MixtureDataset(source, self.num_sources, self.sample_rate, self.segment_seconds,
                                  length=self.epoch_size, seed=self.seed, **self.mix_kwargs, **self.train_kwargs)
        return fixed_test_set(source, self.valid_size, self.num_sources, self.sample_rate,
                              self.valid_segment_seconds, seed=self.seed + 1, **self.mix_kwargs)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None and stage in (None, "fit"):
            self.train_dataset = self._make(self.train_source, True)
        if self.valid_dataset is None and self.valid_source is not None and stage in (None, "fit", "validate"):
            self.valid_dataset = self._make(self.valid_source, False)

    def _loader(self, ds: Dataset, batch_size: int, shuffle: bool, drop_last: bool) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, sampler=EpochSampler(len(ds), shuffle=shuffle, seed=self.seed),
                          num_workers=self.num_workers, collate_fn=collate_mixtures, pin_memory=self.pin_memory,
                          drop_last=drop_last, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            self.setup("fit")
        return self._loader(self.train_dataset, self.batch_size, True, len(self.train_dataset) >= self.batch_size)

    def val_dataloader(self) -> DataLoader | list:
        if self.valid_source is None:
            return []
        if self.valid_dataset is None:
            self.setup("validate")
        return self._loader(self.valid_dataset, 1, False, False)
