"""Padded batches, streaming and the Codec file-level methods give exactly the codes of one file alone."""

import numpy as np
import pytest
import torch
from tok_helpers import build_codec, synth, write_wav

from sonotok.tokenizer import decode_batch, decode_codes, encode_batch, encode_file, encode_stream

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


@pytest.mark.parametrize("qname", ["rvq", "grvq"])  # FSQ has no lower-bitrate prefix (checked by the quantizer)
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


def test_decode_codes_chunked_matches_offline(codec):
    wav = torch.from_numpy(synth(1.3, seed=5))
    codes = codec.encode(wav[None])[0]
    offline = decode_codes(codec, codes, length=wav.shape[-1])
    chunked = decode_codes(codec, codes, length=wav.shape[-1], chunk_frames=7)
    assert offline.shape == (1, wav.shape[-1])
    assert torch.allclose(offline, chunked, atol=1e-4)
    assert decode_batch(codec, [np.asarray(codes)])[0].shape[-1] == codes.shape[-1] * codec.hop_length
