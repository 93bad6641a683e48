"""Padded batches, streaming and the Codec file-level methods give exactly the codes of one file alone."""

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from tok_helpers import build_codec, synth, write_wav

from sonotok.models.semantic import XCodec
from sonotok.tokenizer import decode_batch, decode_codes, encode_batch, encode_file, encode_stream
from sonotok.training.train import compose_config

LENGTHS = [3217, 8000, 4997, 12345, 320, 1]


@pytest.mark.parametrize("qname", ["rvq", "grvq", "simvq", "fsq"])
def test_padded_batch_equals_each_file_alone(qname):
    codec = build_codec(qname)
    wavs = [torch.from_numpy(synth(n / 16000, seed=i))[0] for i, n in enumerate(LENGTHS)]
    batch = encode_batch(codec, wavs)
    assert len({tuple(c.flatten()[:50].tolist()) for c in batch[:4]}) > 1, "codes do not vary: weak test"
    for w, c, n in zip(wavs, batch, LENGTHS):
        alone = codec.encode(w[None, None])[0]
        assert c.shape == (codec.num_codebooks, -(-n // codec.hop_length)), (c.shape, n)
        assert c.dtype == torch.int64
        assert torch.equal(c, alone), f"{qname}: padding leaked into an item of length {n}"
    # a different batch composition and order changes nothing either
    again = encode_batch(codec, wavs[::-1][:3])
    for c, ref in zip(again, batch[::-1][:3]):
        assert torch.equal(c, ref)


@pytest.mark.parametrize("qname", ["rvq", "grvq", "fsq"])
def test_num_codebooks_is_a_prefix(qname):
    codec = build_codec(qname)
    k = 2
    wavs = [torch.from_numpy(synth(0.3, seed=1))[0], torch.from_numpy(synth(0.5, seed=2))[0]]
    full = encode_batch(codec, wavs)
    low = encode_batch(codec, wavs, num_codebooks=k)
    for a, b in zip(full, low):
        assert b.shape[0] == k and torch.equal(a[:k], b)


@pytest.mark.parametrize("qname", ["rvq", "simvq"])
@pytest.mark.parametrize("block", [1, 319, 320, 1234])
def test_stream_equals_whole_file(qname, block):
    codec = build_codec(qname)
    wav = torch.from_numpy(synth(0.025 if block == 1 else 1.53, seed=3))
    whole = codec.encode(wav[None])[0]
    blocks = (wav[:, i: i + block] for i in range(0, wav.shape[-1], block))
    codes, n = encode_stream(codec, blocks)
    assert n == wav.shape[-1]
    assert torch.equal(codes, whole)


def test_encode_file_streams_long_files_identically(tmp_path, codec):
    path = write_wav(tmp_path / "a.wav", 3.01)
    whole = encode_file(codec, path)  # short: loaded whole
    streamed = encode_file(codec, path, long_file_seconds=1.0, chunk_seconds=0.37)
    assert torch.equal(whole, streamed)
    # resampled long file: also identical to whole-file encoding
    p2 = write_wav(tmp_path / "b.wav", 2.5, sr=22050)
    assert torch.equal(encode_file(codec, p2), encode_file(codec, p2, long_file_seconds=1.0, chunk_seconds=0.3))


def test_codec_methods(tmp_path, codec):
    path = write_wav(tmp_path / "a.wav", 0.8, sr=24000)
    from sonotok.data.audio import load_audio

    ref = codec.encode(load_audio(path, 16000)[None])[0]
    assert torch.equal(codec.encode_file(path), ref)
    assert torch.equal(codec.encode_file(path, num_codebooks=2), ref[:2])
    wavs = [torch.from_numpy(synth(s, sr=24000, seed=i))[0] for i, s in enumerate([0.2, 0.45])]
    codes = codec.encode_batch(wavs, sample_rate=24000)
    assert [c.shape[-1] for c in codes] == [-(-int(0.2 * 16000) // 320), -(-int(0.45 * 16000) // 320)]
    out = codec.decode_batch(codes, lengths=[3200, 7200])
    assert [o.shape for o in out] == [(1, 3200), (1, 7200)]
    for c, o in zip(codes, out):  # causal decoder: batch padding never leaks back
        alone = codec.decode(c[None])[0][..., : o.shape[-1]]
        assert torch.allclose(o, alone, atol=1e-5)


def spectral_codec(seed=0):
    """A tiny ``experiment=tiny`` codec: inverse-STFT decoder with a delay of 480 samples (hop 320), the
    log-magnitude bias raised so the output is loud enough that a misaligned or incomplete tail shows."""
    torch.manual_seed(seed)
    cfg = compose_config(["experiment=tiny", "encoder.width=16", "decoder.width=16", "latent_dim=8",
                          "encoder.num_blocks=1", "decoder.num_blocks=1"])
    codec = instantiate(cfg.codec).eval()
    head = codec.decoder.model.layers[-1]
    with torch.no_grad():
        head.proj.bias[: head.n_bins] = 0.0
    assert codec.decoder_delay == 480
    return codec


@pytest.mark.parametrize("model", ["seanet", "istft"])
@pytest.mark.parametrize("chunk_frames", [1, 7, 13])
def test_decode_codes_chunked_matches_offline(codec, model, chunk_frames):
    """Code files longer than the chunk (`sonotok decode` chunks at 3000 frames) decode to the same samples
    at the same positions as offline decoding, the decoder's delay and its last `delay` samples included."""
    codec = codec if model == "seanet" else spectral_codec()
    wav = torch.from_numpy(synth(1.3, seed=5))
    codes = codec.encode(wav[None])[0]
    assert codes.shape[-1] > 3 * chunk_frames
    offline = decode_codes(codec, codes, length=wav.shape[-1])
    chunked = decode_codes(codec, codes, length=wav.shape[-1], chunk_frames=chunk_frames)
    assert offline.shape == chunked.shape == (1, wav.shape[-1])
    assert offline.abs().max() > 1e-2, "silent output: weak test"
    torch.testing.assert_close(chunked, offline, atol=1e-5, rtol=0)
    whole = decode_codes(codec, codes, chunk_frames=chunk_frames)  # uncropped: every sample, the tail included
    torch.testing.assert_close(whole, codec.decode(codes[None])[0], atol=1e-5, rtol=0)
    assert decode_batch(codec, [np.asarray(codes)])[0].shape[-1] == codes.shape[-1] * codec.hop_length


def tiny_xcodec(seed=1):
    from sonotok.quantizers import ResidualVQ
    from tests.semantic.conftest import TinyTeacher, tiny_codec_parts

    torch.manual_seed(seed)
    enc, _, dec = tiny_codec_parts()
    q = ResidualVQ(dim=16, num_codebooks=3, codebook_size=32, kmeans_init=False)
    return XCodec(enc, q, dec, teacher=TinyTeacher(), teacher_dim=12, semantic_dim=8, name="tiny-xcodec").eval()


def test_noncausal_model_batch_equals_single():
    """X-Codec's teacher and semantic convolutions see the padding of a batch: encode_batch encodes such a
    model one item at a time, so its codes are still those of each file alone."""
    codec = tiny_xcodec()
    assert codec.causal is False and build_codec("rvq").causal is True
    wavs = [torch.from_numpy(synth(n / 16000, seed=i))[0] for i, n in enumerate([3217, 8000, 4997, 12345])]
    alone = [codec.encode(w[None, None])[0] for w in wavs]
    t = max(codec.num_frames(w.shape[-1]) for w in wavs) * codec.hop_length
    padded = codec.encode(torch.stack([torch.nn.functional.pad(w, (0, t - w.shape[-1])) for w in wavs])[:, None])
    assert any(not torch.equal(padded[i, :, : a.shape[-1]], a) for i, a in enumerate(alone)), \
        "padding does not change this model's codes: weak test"
    for c, a in zip(encode_batch(codec, wavs), alone):
        assert torch.equal(c, a)


def test_noncausal_long_file_fails_alone_and_the_run_goes_on(tmp_path):
    """A long file cannot stream through X-Codec: that file fails with a clear reason, the others are written
    (the run used to abort on the SonotokError of encode_step); the batch is forced to 1, and said so."""
    from sonotok.tokenizer import tokenize
    from sonotok.tokenizer.formats import load_codes

    codec = tiny_xcodec()
    src = tmp_path / "in"
    write_wav(src / "short.wav", 0.4, seed=1)
    write_wav(src / "short2.wav", 0.7, seed=2)
    write_wav(src / "long.wav", 1.5, seed=3)
    with pytest.warns(UserWarning, match="not causal.*batch_size=1"):
        summary = tokenize(codec, [src], tmp_path / "out", batch_size=4, long_file_seconds=1.0, progress=False)
    assert summary.written == 2 and summary.failed == 1
    (path, reason), = summary.failures
    assert path.endswith("long.wav") and "not causal" in reason and "long_file_seconds" in reason
    from sonotok.data.audio import load_audio

    codes = load_codes(tmp_path / "out" / "short2.npy")[0]
    assert torch.equal(torch.as_tensor(codes), codec.encode(load_audio(src / "short2.wav", 16000)[None])[0])
