"""The STFT/ConvNeXt encoder + Vocos decoder in a Codec: streaming, presets, one training step."""

import pytest
import torch

from sonotok.models import Codec
from sonotok.modules.stft_convnext import STFTConvNeXtEncoder, VocosDecoder
from sonotok.quantizers import FSQ
from sonotok.training.train import build_module, compose_config

N_FFT, HOP, STRIDE = 64, 16, 2


def tiny_codec():
    enc = STFTConvNeXtEncoder(dimension=8, width=16, n_fft=N_FFT, stft_hop=HOP, stride=STRIDE,
                              num_blocks=1, num_post_blocks=1, mlp_ratio=2.0)
    dec = VocosDecoder(dimension=8, width=16, n_fft=N_FFT, stft_hop=HOP, stride=STRIDE,
                       num_pre_blocks=1, num_blocks=1, mlp_ratio=2.0)
    q = FSQ(dim=8, levels=[5, 5], num_codebooks=4)
    return Codec(enc, q, dec, sample_rate=16000, decoder_delay=dec.delay).eval()


@pytest.mark.parametrize("chunk", [1, 13, 32, 100])
def test_encoder_streams_like_offline(chunk):
    codec = tiny_codec()
    x = torch.randn(2, 1, 32 * 9)
    ref = codec.encoder(x)
    state = codec.encoder.init_state(2)
    outs = []
    for i in range(0, x.shape[-1], chunk):
        y, state = codec.encoder.step(x[..., i : i + chunk], state)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, -1), ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_decoder_streams_like_offline_with_its_delay(chunk):
    codec = tiny_codec()
    z = torch.randn(2, 8, 9)
    ref = codec.decoder(z)
    assert ref.shape == (2, 1, 9 * codec.hop_length)
    state = codec.decoder.init_state(2)
    outs = []
    for i in range(0, z.shape[-1], chunk):
        y, state = codec.decoder.step(z[..., i : i + chunk], state)
        outs.append(y)
    out = torch.cat(outs, -1)
    d = codec.decoder_delay
    assert d == N_FFT - HOP
    torch.testing.assert_close(out[..., d:], ref[..., :-d], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("chunk", [7, 32, 50])
def test_codec_codes_and_audio_stream_like_offline(chunk):
    codec = tiny_codec()
    x = 0.1 * torch.randn(1, 1, 32 * 8)
    codes = codec.encode(x)
    wav = codec.decode(codes)
    with codec.streaming(1) as s:
        c = [s.encode(x[..., i : i + chunk]) for i in range(0, x.shape[-1], chunk)]
        c = torch.cat(c, -1)
        y = [s.decode(c[..., i : i + 1]) for i in range(c.shape[-1])]
        _, tail = s.flush()
    assert torch.equal(c, codes)
    d = codec.decoder_delay
    # the session drops the decoder's pre-roll: the first frames return fewer samples, and the flush
    # returns the last `delay` samples, so the session gives the offline decode sample for sample
    assert sum(p.shape[-1] for p in y) == wav.shape[-1] - d and tail.shape[-1] == d
    torch.testing.assert_close(torch.cat(y + [tail], -1), wav, atol=1e-5, rtol=1e-4)
    assert codec.latency_samples == codec.hop_length + d


@pytest.mark.parametrize("preset", ["fast_16k", "tiny"])
def test_preset_builds_at_4kbps_and_one_training_step_runs(preset):
    cfg = compose_config([
        f"experiment={preset}",
        "encoder.width=16", "decoder.width=16",
        "encoder.num_blocks=1", "encoder.num_post_blocks=1",
        "decoder.num_pre_blocks=1", "decoder.num_blocks=1",
    ])
    module = build_module(cfg)
    codec = module.codec
    assert codec.bitrate() <= 4000
    assert codec.frame_rate == 50.0
    assert codec.decoder_delay == codec.decoder.delay
    (opt,), (sched,) = module.configure_optimizers()
    wav = 0.1 * torch.randn(2, 1, 8000)
    out = codec(wav)
    assert out["recon"].shape == wav.shape
    losses = module.reconstruction_losses(out["recon"], wav)
    losses.update(out["losses"])
    total = module.weighted_total(losses)
    assert torch.isfinite(total)
    opt.zero_grad()
    total.backward()
    before = [p.detach().clone() for p in codec.parameters()]
    opt.step()
    sched.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, codec.parameters()))


def test_streaming_modules_script_and_match_eager():
    from sonotok.export.wrappers import build_export_modules

    codec = tiny_codec()
    enc, dec, _ = build_export_modules(codec)
    enc, dec = torch.jit.script(enc), torch.jit.script(dec)
    x = 0.1 * torch.randn(1, 1, 32 * 6)
    codes = codec.encode(x)
    wav = codec.decode(codes)
    es, ds = enc.init_state(1), dec.init_state(1)
    cs, ys = [], []
    for i in range(0, x.shape[-1], 32):
        c, es = enc(x[..., i : i + 32], es)
        y, ds = dec(c, ds)
        cs.append(c)
        ys.append(y)
    assert torch.equal(torch.cat(cs, -1), codes)
    d = codec.decoder_delay
    torch.testing.assert_close(torch.cat(ys, -1)[..., d:], wav[..., :-d], atol=1e-5, rtol=1e-4)
