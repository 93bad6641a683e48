import pytest
import torch

from sonotok.export.separator import StreamingSeparator, export_separator
from sonotok.models.separation import conv_tasnet, load_torchaudio_weights, num_parameters

TINY = dict(N=16, L=16, B=8, H=12, P=3, X=3, R=2)


@pytest.mark.parametrize("norm", ["cln", "channel"])
def test_streaming_equals_offline(norm):
    m = conv_tasnet(2, norm=norm, causal=True, **TINY).eval()
    x = torch.randn(2, 1, 803)
    with torch.no_grad():
        off = m(x)
        for chunk in (1, 5, 8, 64, 333, 2000):
            assert (m.stream(x, chunk) - off).abs().max() < 1e-5, chunk
        # raw stream = offline delayed by delay_samples
        state = m.init_state(2)
        ys = []
        for i in range(0, 800, 40):
            y, state = m.step(x[..., i : i + 40], state)
            ys.append(y)
        y = torch.cat(ys, -1)
        d = m.delay_samples
        assert y.shape == (2, 2, 800)
        assert (y[..., d:] - off[..., : 800 - d]).abs().max() < 1e-5


def test_three_sources_and_masks():
    for mask in ("sigmoid", "relu", "softmax"):
        m = conv_tasnet(3, mask=mask, **TINY)
        assert m(torch.randn(1, 1, 100)).shape == (1, 3, 100)
    assert m(torch.randn(1, 100)).shape == (1, 3, 100)


def test_noncausal_cannot_stream_and_gln_not_causal():
    with pytest.raises(RuntimeError, match="non-causal"):
        conv_tasnet(2, **TINY).init_state(1)
    with pytest.raises(ValueError, match="causal norm"):
        conv_tasnet(2, norm="gln", causal=True, **TINY)


def test_torchaudio_parity():
    torchaudio = pytest.importorskip("torchaudio")
    # the paper configuration: same parameter count
    assert num_parameters(conv_tasnet()) == num_parameters(torchaudio.models.ConvTasNet()) == 4_984_881
    ref = torchaudio.models.ConvTasNet(2, 16, 16, 3, 8, 12, 3, 2).eval()
    m = load_torchaudio_weights(conv_tasnet(2, **TINY), ref).eval()
    assert num_parameters(m) == num_parameters(ref)
    with torch.no_grad():
        for t in (800, 803, 37):
            x = torch.randn(2, 1, t)
            assert (m(x) - ref(x)).abs().max() < 1e-5


def test_torchscript_export(tmp_path):
    m = conv_tasnet(2, norm="cln", causal=True, **TINY).eval()
    info = export_separator(m, str(tmp_path), example_seconds=0.1)
    assert info["offline_max_abs_diff"] < 1e-5 and info["streaming_max_abs_diff"] < 1e-5
    off = torch.jit.load(str(tmp_path / "separator_offline.pt"))
    st = torch.jit.load(str(tmp_path / "separator_streaming.pt"))
    x = torch.randn(1, 1, 400)
    with torch.no_grad():
        ref = m(x)
        assert (off(x) - ref).abs().max() < 1e-5
        state = st.init_state(1)
        ys = []
        xp = torch.cat([x, torch.zeros(1, 1, m.delay_samples)], -1)
        for i in range(0, xp.shape[-1], 13):
            y, state = st(xp[..., i : i + 13], state)
            ys.append(y)
        y = torch.cat(ys, -1)[..., m.delay_samples : m.delay_samples + 400]
        assert (y - ref).abs().max() < 1e-5
    with pytest.raises(ValueError):
        StreamingSeparator(conv_tasnet(2, **TINY))


def test_model_dir_roundtrip(tmp_path):
    from hydra.utils import instantiate

    import sonotok
    from sonotok.model_io import save_model
    from sonotok.training.train import compose_config

    cfg = compose_config(["separation=convtasnet_tiny"], config_name="separate")
    m = instantiate(cfg.separator)
    save_model(m, tmp_path / "sep", cfg.separator)
    loaded = sonotok.load(tmp_path / "sep")
    x = torch.randn(1, 1, 160)
    with torch.no_grad():
        assert torch.allclose(loaded(x), m.eval()(x), atol=1e-6)
    assert loaded.meta["num_sources"] == 2 and loaded.sample_rate == 8000


def test_codec_latent_separator(tmp_path):
    from hydra.utils import instantiate

    import sonotok
    from sonotok.model_io import save_model
    from sonotok.training.train import compose_config

    ccfg = compose_config(["experiment=tiny_seanet", "encoder.n_filters=4", "decoder.n_filters=4", "latent_dim=8",
                           "quantizer.codebook_size=16", "quantizer.num_codebooks=2"])
    save_model(instantiate(ccfg.codec), tmp_path / "codec", ccfg.codec)
    cfg = compose_config(["separation=codec_latent_tiny", f"codec_model={tmp_path / 'codec'}",
                          "separator.masker.num_filters=8", "separator.masker.bottleneck=8",
                          "separator.masker.hidden=8"], config_name="separate")
    sep = instantiate(cfg.separator)
    trainable = [n for n, p in sep.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("masker.") for n in trainable)
    x = torch.randn(2, 1, 1000)
    assert sep(x).shape == (2, 2, 1000)
    save_model(sep, tmp_path / "sep", cfg.separator)
    loaded = sonotok.load(tmp_path / "sep")
    with torch.no_grad():
        assert torch.allclose(loaded(x), sep.eval()(x), atol=1e-5)


def test_torch_export_offline_and_step():
    m = conv_tasnet(2, norm="cln", causal=True, **TINY).eval()
    x = torch.randn(1, 1, 320)
    ep = torch.export.export(m, (x,))
    assert (ep.module()(x) - m(x)).abs().max() < 1e-5
    s = StreamingSeparator(m)
    chunk = torch.randn(1, 1, 80)
    ep2 = torch.export.export(s, (chunk, s.init_state(1)))
    y, _ = ep2.module()(chunk, s.init_state(1))
    y_ref, _ = s(chunk, s.init_state(1))
    assert (y - y_ref).abs().max() < 1e-5
