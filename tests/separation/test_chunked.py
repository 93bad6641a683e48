"""Long inputs separated window by window (bounded memory) equal the whole-signal forward."""

import pytest
import torch

from sonotok.models.separate import separate_chunked
from sonotok.models.separation import context_samples, conv_tasnet

TINY = dict(N=16, L=16, B=8, H=12, P=3, X=3, R=2)


class _Recorder(torch.nn.Module):
    """Wraps a separator and records the length of every window it is called on."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.sample_rate, self.hop_length, self.kernel_size = model.sample_rate, model.hop_length, model.kernel_size
        self.masker, self.causal = model.masker, model.causal
        self.lengths = []

    def forward(self, x):
        self.lengths.append(x.shape[-1])
        return self.model(x)


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_equals_whole_for_frame_local_model(causal):
    # norm=channel normalises each frame alone, so with context >= the receptive field every window computes
    # exactly what the whole forward computes: the only difference is float summation order (~1e-7 of the
    # signal's scale); 1e-5 is two orders above that and far below any seam (a wrong window would be O(1)).
    torch.manual_seed(0)
    m = conv_tasnet(2, norm="channel", causal=causal, **TINY).eval()
    x = torch.randn(2, 1, 8000 * 3)
    with torch.no_grad():
        whole = m(x)
        for chunk, fade in ((1000, None), (3000, 0), (7777, 200), (500, 64)):
            out = separate_chunked(m, x, chunk, fade=fade)
            assert out.shape == whole.shape
            assert (out - whole).abs().max() < 1e-5 * whole.abs().max(), (chunk, fade)
        # context shorter than the receptive field: no longer exact (the test can fail)
        short = separate_chunked(m, x, 1000, context=16, fade=0)
        assert (short - whole).abs().max() > 1e-3 * whole.abs().max()


def test_chunked_memory_is_bounded_by_the_window():
    m = _Recorder(conv_tasnet(2, norm="gln", **TINY).eval())
    x = torch.randn(1, 1, 8000 * 60)  # 60 s at 8 kHz
    chunk = 8000 * 2
    with torch.no_grad():
        out = separate_chunked(m, x, chunk)
    ctx = context_samples(m.model)
    assert out.shape == (1, 2, x.shape[-1]) and torch.isfinite(out).all()
    assert len(m.lengths) == 30
    assert max(m.lengths) <= chunk + 2 * (ctx + m.hop_length + chunk)  # never the whole signal
    assert max(m.lengths) < 3 * chunk
    short = _Recorder(conv_tasnet(2, **TINY).eval())
    with torch.no_grad():
        separate_chunked(short, torch.randn(1, 1, 1000), chunk)
    assert short.lengths == [1000]  # short inputs: one call on the whole signal


class _BandSplitter(torch.nn.Module):
    """A 'separator' that splits low / high band and returns them in a random order on every call."""

    sample_rate, hop_length = 8000, 1

    def __init__(self):
        super().__init__()
        self.gen = torch.Generator().manual_seed(1)

    def forward(self, x):
        spec = torch.fft.rfft(x, dim=-1)
        cut = spec.shape[-1] // 4
        low, high = spec.clone(), spec.clone()
        low[..., cut:] = 0
        high[..., :cut] = 0
        y = torch.cat([torch.fft.irfft(low, x.shape[-1]), torch.fft.irfft(high, x.shape[-1])], 1)
        return y.flip(1) if torch.rand((), generator=self.gen) < 0.5 else y


def test_chunked_aligns_source_order_across_windows():
    t = torch.arange(8000 * 6) / 8000
    x = (torch.sin(2 * torch.pi * 200 * t) + torch.sin(2 * torch.pi * 3000 * t)).view(1, 1, -1) * 0.3
    ref = torch.stack([torch.sin(2 * torch.pi * 200 * t), torch.sin(2 * torch.pi * 3000 * t)]) * 0.3
    out = separate_chunked(_BandSplitter(), x, 4000, context=400, fade=200)[0]
    if (out[0] * ref[0]).sum() < 0.5 * (ref[0] ** 2).sum():  # one global order for the whole output
        out = out.flip(0)
    err = (out - ref)[:, 800:-800]  # edges of the signal: FFT edge effects of the toy splitter
    assert err.abs().max() < 0.05, float(err.abs().max())


def test_chunked_rejects_bad_arguments():
    m = conv_tasnet(2, **TINY)
    with pytest.raises(ValueError, match="chunk"):
        separate_chunked(m, torch.randn(1, 1, 100), 0)
    with pytest.raises(ValueError, match="fade"):
        separate_chunked(m, torch.randn(1, 1, 100), 50, context=8, fade=40)


def test_separate_method_windows_long_inputs():
    m = conv_tasnet(2, norm="channel", **TINY).eval()
    wav = torch.randn(2, 16000 * 2)  # stereo, 16 kHz, 2 s
    with torch.no_grad():
        whole = m.separate(wav, 16000, chunk_seconds=None)
        windowed = m.separate(wav, 16000, chunk_seconds=0.25)
    assert whole.shape == windowed.shape == (2, 8000 * 2)
    assert (whole - windowed).abs().max() < 1e-5 * whole.abs().max()
