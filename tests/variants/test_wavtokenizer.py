"""WavTokenizer-style presets: compose, build, train one step (GAN with MPD + MRD), stream == offline."""

import pytest
import torch
from hydra.utils import instantiate

from sonotok.modules.wavtokenizer import CausalWindowAttention, WavTokenizerDecoder
from sonotok.quantizers import ResidualSimVQ, ResidualVQ
from sonotok.training.train import build_module, compose_config, run_training

PRESETS = {"wavtokenizer_24k_75hz": (75.0, 320, 900.0), "wavtokenizer_24k_40hz": (40.0, 600, 480.0)}

# a few thousand parameters: same structure as the presets
TINY = [
    "latent_dim=16",
    "encoder.n_filters=2",
    "encoder.dilations=[1]",
    "decoder.width=16",
    "decoder.num_blocks=2",
    "decoder.attention_at=[-1,0]",
    "decoder.num_heads=2",
    "decoder.attention_context=5",
    "quantizer.codebook_size=64",
]
TINY_VQ = ["quantizer.kmeans_init=false"]
TINY_DISC = [
    "discriminator.discriminators.mpd.channels=2",
    "discriminator.discriminators.mpd.max_channels=4",
    "discriminator.discriminators.mpd.num_layers=2",
    "discriminator.discriminators.mrd.channels=2",
    "discriminator.discriminators.mrd.num_layers=1",
]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_builds_with_documented_stream(preset):
    fr, hop, bps = PRESETS[preset]
    cfg = compose_config([f"experiment={preset}"])
    assert set(cfg.discriminator.discriminators) == {"mpd", "mrd"}
    codec = instantiate(cfg.codec)
    assert codec.sample_rate == 24000 and codec.frame_rate == fr and codec.hop_length == hop
    assert codec.num_codebooks == 1 and codec.codebook_size == 4096
    assert codec.bitrate() == pytest.approx(bps)
    assert isinstance(codec.decoder, WavTokenizerDecoder)
    assert codec.decoder.hop_length == codec.hop_length, "iSTFT hop must equal the encoder hop"
    assert codec.decoder_delay == codec.decoder.delay == 3 * hop
    assert cfg.data.sample_rate == 24000


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_simvq_override(preset):
    cfg = compose_config([f"experiment={preset}", "quantizer=simvq", *TINY])
    codec = instantiate(cfg.codec)
    assert isinstance(codec.quantizer, ResidualSimVQ)
    assert codec.num_codebooks == 1 and codec.codebook_size == 64
    cfg = compose_config([f"experiment={preset}", "quantizer=simvq", "quantizer.codebook_size=16384"])
    assert cfg.quantizer.codebook_size == 16384 and cfg.quantizer.num_codebooks == 1


def data_overrides(folder, out_dir):
    return [
        "data=folder", f"data.train={folder}", f"data.valid={folder}", "data.num_workers=0", "data.batch_size=2",
        "data.segment_seconds=0.25", "data.valid_max_seconds=0.25", f"out_dir={out_dir}", "threads=1",
    ]


@pytest.mark.parametrize("preset,quantizer", [("wavtokenizer_24k_75hz", "vq"), ("wavtokenizer_24k_40hz", "simvq")])
def test_fast_dev_run_gan_step(preset, quantizer, synth24k, tmp_path):
    q = ["quantizer=simvq"] if quantizer == "simvq" else TINY_VQ
    over = [f"experiment={preset}", *q, *TINY, *TINY_DISC, "debug=fast", *data_overrides(synth24k, tmp_path)]
    cfg = compose_config(over)
    module = build_module(cfg)
    assert sum(p.numel() for p in module.codec.parameters()) < 100_000  # mostly the iSTFT head (3 x 641 bins)
    assert module.gan_active()
    summary = run_training(cfg)
    assert summary["steps"] == 1


def test_forward_backward_gradients_reach_every_module():
    cfg = compose_config(["experiment=wavtokenizer_24k_75hz", *TINY, *TINY_VQ])
    codec = instantiate(cfg.codec).train()
    assert isinstance(codec.quantizer, ResidualVQ)
    wav = 0.1 * torch.randn(2, 1, 320 * 6)
    out = codec(wav)
    assert out["recon"].shape == wav.shape
    loss = out["recon"].square().mean() + sum(out["losses"].values())
    loss.backward()
    for name in ("encoder", "decoder"):
        grads = [p.grad for p in getattr(codec, name).parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads), f"{name} has parameters without gradient"


# ---------------------------------------------------------------- streaming

def tiny_codec(preset):
    cfg = compose_config([f"experiment={preset}", *TINY, *TINY_VQ])
    return instantiate(cfg.codec).eval()


def stream(codec, wav, chunk):
    enc_state, dec_state = codec.init_state(wav.shape[0])
    codes, audio = [], []
    for i in range(0, wav.shape[-1], chunk):
        c, enc_state = codec.encode_step(wav[..., i : i + chunk], enc_state)
        y, dec_state = codec.decode_step(c, dec_state)
        assert y.shape[-1] == c.shape[-1] * codec.hop_length
        codes.append(c)
        audio.append(y)
    return torch.cat(codes, -1), torch.cat(audio, -1)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("chunk", ["1frame", "frame+7", "3frames", "all"])
def test_streamed_equals_offline(preset, chunk):
    torch.manual_seed(0)
    codec = tiny_codec(preset)
    hop, delay = codec.hop_length, codec.decoder_delay
    frames = 12  # more than attention_context=5: the window slides
    n = {"1frame": hop, "frame+7": hop + 7, "3frames": 3 * hop, "all": frames * hop}[chunk]
    wav = 0.1 * torch.randn(2, 1, frames * hop)
    with torch.no_grad():
        ref_codes = codec.encode(wav)
        ref_audio = codec.decode(ref_codes)
        codes, audio = stream(codec, wav, n)
    assert torch.equal(codes, ref_codes), f"chunk {n}: streamed codes differ"
    # the iSTFT overlap-add makes the stream lag the offline output by decoder_delay samples
    torch.testing.assert_close(audio[..., delay:], ref_audio[..., : audio.shape[-1] - delay], atol=1e-5, rtol=1e-4)
    assert audio[..., :delay].abs().max() < 1e-3 + ref_audio.abs().max()  # pre-roll is finite


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("chunk", [1, 5])
def test_streaming_session_gives_the_decoded_signal(preset, chunk):
    """A delay of three hops (and the attention's state): the session drops the pre-roll and its flush
    returns the tail, so the streamed audio is the offline decode sample for sample."""
    torch.manual_seed(0)
    codec = tiny_codec(preset)
    assert codec.decoder_delay == 3 * codec.hop_length
    with torch.no_grad():
        codes = codec.encode(0.1 * torch.randn(1, 1, 12 * codec.hop_length))
        ref = codec.decode(codes)
    with codec.streaming(1) as s:
        parts = [s.decode(codes[..., i : i + chunk]) for i in range(0, codes.shape[-1], chunk)]
        _, tail = s.flush()
    assert [p.shape[-1] for p in parts[:2]] == ([0, 0] if chunk == 1 else [2 * codec.hop_length, 5 * codec.hop_length])
    torch.testing.assert_close(torch.cat(parts + [tail], -1), ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("context", [1, 3, 50])
@pytest.mark.parametrize("chunks", [[1] * 9, [4, 0, 5], [2, 7], [9]])
def test_window_attention_streams(context, chunks):
    torch.manual_seed(0)
    att = CausalWindowAttention(8, num_heads=2, context=context)
    torch.nn.init.normal_(att.out.weight)  # not the identity start
    x = torch.randn(2, 8, sum(chunks))
    with torch.no_grad():
        ref = att(x)
        state, ys, i = att.init_state(2), [], 0
        for c in chunks:
            y, state = att.step(x[..., i : i + c], state)
            ys.append(y)
            i += c
    torch.testing.assert_close(torch.cat(ys, -1), ref, atol=1e-5, rtol=1e-4)


def test_window_attention_is_causal_and_windowed():
    torch.manual_seed(0)
    att = CausalWindowAttention(8, num_heads=2, context=3)
    torch.nn.init.normal_(att.out.weight)
    x = torch.randn(1, 8, 10)
    x2 = x.clone()
    x2[..., 6] += 1.0
    with torch.no_grad():
        d = (att(x) - att(x2)).abs().sum(1)[0]
    assert torch.all(d[:6] == 0), "future frames must not change the past"
    assert torch.all(d[6:9] > 0) and d[9] == 0, "frame 6 is seen by frames 6..8 only (context 3)"


def test_decoder_rejects_bad_attention_index():
    with pytest.raises(ValueError, match="attention_at"):
        WavTokenizerDecoder(dimension=8, width=8, num_blocks=2, attention_at=[5], num_heads=2)


def test_torchscript_export_of_the_causal_variant(tmp_path):
    from sonotok.export.torchscript import export_torchscript

    codec = tiny_codec("wavtokenizer_24k_75hz")
    meta = export_torchscript(codec, tmp_path)
    check = meta["torchscript_check"]
    assert check["codes_equal"] == 1.0 and check["offline_max_abs_diff"] < 1e-5
    # the scripted streaming decoder reproduces the eager offline audio, delayed by decoder_delay
    dec = torch.jit.load(str(tmp_path / "decoder_stream.pt"))
    codes = codec.encode(0.1 * torch.randn(1, 1, 8 * codec.hop_length))
    with torch.no_grad():
        ref = codec.decode(codes)
    ys, state = [], dec.init_state(1)
    for i in range(codes.shape[-1]):
        y, state = dec(codes[..., i : i + 1], state)
        ys.append(y)
    y, d = torch.cat(ys, -1), codec.decoder_delay
    torch.testing.assert_close(y[..., d:], ref[..., : y.shape[-1] - d], atol=1e-5, rtol=1e-4)
