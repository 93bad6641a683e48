"""Codec streaming: codes identical to offline, audio within float tolerance, causal, any chunking."""

import pytest
import torch

from sonotok.models.codec import Codec
from sonotok.modules.seanet import SEANetDecoder, SEANetEncoder
from sonotok.quantizers.fsq import FSQ
from sonotok.quantizers.rvq import ResidualVQ

CONFIGS = {
    # strides, dilations, residual kernel, first kernel, activation
    "s2x4": dict(strides=(2, 4), dilations=(1, 3), residual_kernel_size=3, kernel_size=7, activation="elu"),
    "s3_k5_d2": dict(strides=(3,), dilations=(2,), residual_kernel_size=5, kernel_size=4, activation="snake"),
    "s2x2x2": dict(strides=(2, 2, 2), dilations=(1,), residual_kernel_size=2, kernel_size=3, activation="elu"),
}


def make_codec(name="s2x4", quantizer="rvq"):
    kw = CONFIGS[name]
    enc = SEANetEncoder(1, 16, 4, last_kernel_size=3, **kw)
    dec = SEANetDecoder(1, 16, 4, last_kernel_size=3, **kw)
    q = ResidualVQ(16, 2, 32, kmeans_init=False) if quantizer == "rvq" else FSQ(16, (5, 4, 3), num_codebooks=2)
    return Codec(enc, q, dec).eval()


def stream_codec(codec, wav, chunk):
    enc_state, dec_state = codec.init_state(wav.shape[0])
    codes, audio = [], []
    for i in range(0, wav.shape[-1], chunk):
        c, enc_state = codec.encode_step(wav[..., i : i + chunk], enc_state)
        y, dec_state = codec.decode_step(c, dec_state)
        assert y.shape[-1] == c.shape[-1] * codec.hop_length
        codes.append(c)
        audio.append(y)
    return torch.cat(codes, -1), torch.cat(audio, -1)


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("chunk", ["1", "7", "frame", "frame+1", "37", "many"])
def test_streamed_equals_offline(name, chunk):
    codec = make_codec(name)
    hop = codec.hop_length
    n = {"1": 1, "7": 7, "frame": hop, "frame+1": hop + 1, "37": 37, "many": 5 * hop}[chunk]
    wav = torch.randn(2, 1, 12 * hop)
    ref_codes = codec.encode(wav)
    ref_audio = codec.decode(ref_codes)
    codes, audio = stream_codec(codec, wav, n)
    assert torch.equal(codes, ref_codes), f"chunk {n}: streamed codes differ"
    torch.testing.assert_close(audio, ref_audio, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("chunk", [1, 8, 800])
def test_streamed_fsq(chunk):
    codec = make_codec("s2x4", "fsq")
    wav = torch.randn(1, 1, 800)
    codes, audio = stream_codec(codec, wav, chunk)
    assert torch.equal(codes, codec.encode(wav))
    torch.testing.assert_close(audio, codec.decode(codes), atol=1e-5, rtol=1e-4)


def test_codes_do_not_depend_on_chunking_irregular():
    codec = make_codec()
    wav = torch.randn(1, 1, 8 * 25)
    g = torch.Generator().manual_seed(3)
    sizes = torch.randint(0, 23, (200,), generator=g).tolist()
    enc_state, _ = codec.init_state(1)
    codes, i = [], 0
    for s in sizes:
        c, enc_state = codec.encode_step(wav[..., i : i + s], enc_state)
        codes.append(c)
        i += s
        if i >= wav.shape[-1]:
            break
    c, enc_state = codec.encode_step(wav[..., i:], enc_state)
    codes.append(c)
    assert torch.equal(torch.cat(codes, -1), codec.encode(wav))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_codec_causal(name):
    """Appending audio never changes earlier codes or earlier decoded audio."""
    codec = make_codec(name)
    hop = codec.hop_length
    wav = torch.randn(1, 1, 10 * hop)
    more = torch.cat([wav, torch.randn(1, 1, 7 * hop + 3)], -1)
    c_short, c_long = codec.encode(wav), codec.encode(more)
    assert torch.equal(c_long[..., :10], c_short)
    torch.testing.assert_close(codec.decode(c_long)[..., : 10 * hop], codec.decode(c_short), atol=1e-5, rtol=1e-4)
    # streamed: what came out before the extra audio is unchanged
    s_codes, s_audio = stream_codec(codec, wav, 5)
    l_codes, l_audio = stream_codec(codec, more, 5)
    assert torch.equal(l_codes[..., : s_codes.shape[-1]], s_codes)
    torch.testing.assert_close(l_audio[..., : s_audio.shape[-1]], s_audio, atol=1e-6, rtol=0)


def test_zero_lookahead_latency():
    """A frame's code is emitted with the chunk that holds its last sample; latency = hop + delay."""
    codec = make_codec()
    hop = codec.hop_length
    enc_state, _ = codec.init_state(1)
    wav = torch.randn(1, 1, 3 * hop)
    c, enc_state = codec.encode_step(wav[..., : hop - 1], enc_state)
    assert c.shape[-1] == 0
    c, enc_state = codec.encode_step(wav[..., hop - 1 : hop], enc_state)
    assert c.shape[-1] == 1
    assert codec.latency_samples == hop + codec.decoder_delay
    assert codec.latency_ms == pytest.approx(1000 * hop / codec.sample_rate)


def test_streaming_session_context():
    codec = make_codec()
    wav = torch.randn(1, 1, 160)
    codes, audio = [], []
    with codec.streaming(1) as s:
        for i in range(0, 160, 13):
            c = s.encode(wav[..., i : i + 13])
            codes.append(c)
            audio.append(s.decode(c))
    codes = torch.cat(codes, -1)
    assert torch.equal(codes, codec.encode(wav))
    torch.testing.assert_close(torch.cat(audio, -1), codec.decode(codes), atol=1e-5, rtol=1e-4)
    assert "_stream_q" not in codec.state_dict() and not any("_stream_q" in k for k in codec.state_dict())


def test_stream_quantizer_is_not_stale_after_training():
    """The frozen quantizer cached for streaming is rebuilt once training changed the codebooks (EMA)."""
    torch.manual_seed(0)
    kw = CONFIGS["s2x4"]
    codec = Codec(SEANetEncoder(1, 16, 4, last_kernel_size=3, **kw),
                  ResidualVQ(16, 2, 32, kmeans_init=False, decay=0.5),
                  SEANetDecoder(1, 16, 4, last_kernel_size=3, **kw)).eval()
    wav = torch.randn(1, 1, 800)
    enc_state, _ = codec.init_state(1)  # a stream prepared before training continues
    before, _ = codec.encode_step(wav, enc_state)
    codec.train()
    for _ in range(3):
        codec(3 * torch.randn(4, 1, 800))
    codec.eval()
    offline = codec.encode(wav)
    assert (before != offline).any(), "training did not move the codebooks: weak test"
    after, _ = codec.encode_step(wav, enc_state)
    assert torch.equal(after, offline)
    # training forward passes alone (no train()/eval() switch) also invalidate the streaming copy
    codec.train()
    codec.encode_step(wav, enc_state)  # caches the current codebooks
    codec(3 * torch.randn(4, 1, 800))
    assert torch.equal(codec.encode_step(wav, enc_state)[0], codec.quantizer.encode(codec.encoder(wav)))


def test_stream_quantizer_follows_the_codec_device():
    codec = make_codec()
    codec.encode_step(torch.randn(1, 1, 64), codec.init_state(1)[0])  # cached on the CPU
    codec.to("meta")  # any .to(device): the cached copy must move with it
    tensors = list(codec._stream_quantizer().buffers()) + list(codec._stream_quantizer().parameters())
    assert tensors and all(t.device.type == "meta" for t in tensors)


def test_streaming_session_reset_and_close():
    codec = make_codec()
    wav = torch.randn(1, 1, 8 * 9 + 5)
    s = codec.streaming(1)
    s.encode(torch.randn(1, 1, 30))  # a first stream, abandoned
    s.reset()
    codes = [s.encode(wav[..., i : i + 11]) for i in range(0, wav.shape[-1], 11)]
    last, audio = s.flush()  # never decoded: no audio; the partial last frame is zero-padded
    assert last.shape == (1, codec.num_codebooks, 1) and audio.shape == (1, 1, 0)
    assert torch.equal(torch.cat(codes + [last], -1), codec.encode(wav))
    with pytest.raises(RuntimeError, match="closed"):
        s.decode(last)
    with codec.streaming(1) as s2:
        s2.decode(last)
    assert s2.closed and s2.dec_state == []
