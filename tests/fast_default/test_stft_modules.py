"""Causal STFT front end, ISTFT head and ConvNeXt blocks: stream == offline, exact resynthesis."""

import pytest
import torch

from sonotok.modules.convnext import ConvNeXtStack
from sonotok.modules.stft import CausalSTFT, ISTFTHead


def stream(module, x, chunk):
    state = module.init_state(x.shape[0])
    assert len(state) == module.num_states
    outs = []
    for i in range(0, x.shape[-1], chunk):
        y, state = module.step(x[..., i : i + chunk], state)
        assert len(state) == module.num_states
        outs.append(y)
    return torch.cat(outs, dim=-1), state


@pytest.mark.parametrize("features", ["complex", "logmag_complex"])
@pytest.mark.parametrize("chunk", [1, 5, 16, 37, 200])
def test_causal_stft_streams_like_offline(features, chunk):
    stft = CausalSTFT(64, 16, features=features)
    x = torch.randn(2, 1, 16 * 12)
    ref = stft(x)
    assert ref.shape == (2, stft.out_channels, 12)
    out, _ = stream(stft, x, chunk)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_causal_stft_only_looks_back():
    stft = CausalSTFT(64, 16, features="complex")
    x = torch.randn(1, 1, 160)
    y = x.clone()
    y[..., 80:] = torch.randn(1, 1, 80)  # change the future from sample 80 on
    # frames 0..4 end at samples 16, 32, ..., 80 (exclusive): unchanged
    torch.testing.assert_close(stft(x)[..., :5], stft(y)[..., :5])
    assert not torch.allclose(stft(x)[..., 5], stft(y)[..., 5])


@pytest.mark.parametrize("n_fft, hop, window", [(64, 16, "hann"), (64, 32, "hann"), (64, 8, "hann"),
                                                 (64, 32, "sqrt_hann"), (96, 32, "hann")])
def test_istft_head_inverts_the_causal_stft(n_fft, hop, window):
    """Exact resynthesis for any hop dividing n_fft: the overlap-add is normalised per hop phase (at hop
    n_fft / 2 or n_fft / 3 the Hann^2 overlap is not constant, and a mean normalisation is off by up to 36 %)."""
    stft = CausalSTFT(n_fft, hop, features="complex", window="hann" if window == "hann" else window)
    head = ISTFTHead(4, n_fft, hop, window=window)
    x = torch.randn(2, 1, hop * 20)
    spec = stft(x)
    frames = torch.fft.irfft(torch.complex(spec[:, : head.n_bins], spec[:, head.n_bins :]).transpose(1, 2), n=n_fft)
    y = head._overlap_add(frames * head.window)[..., head.delay :]
    # the last n_fft - hop samples wait for frames after the end
    torch.testing.assert_close(y[..., : -head.delay], x[..., : -head.delay], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
def test_istft_head_streaming_state(chunk):
    head = ISTFTHead(6, 64, 16)
    torch.nn.init.normal_(head.proj.weight, std=0.3)
    x = torch.randn(2, 6, 10)
    ref = head(x)
    assert ref.shape == (2, 1, 10 * 16)
    out, state = stream(head, x, chunk)
    assert out.shape == ref.shape
    assert state[0].shape == (2, 1, head.delay)
    d = head.delay
    # the stream lags by `delay`; flushing the state gives the rest of the full overlap-add
    torch.testing.assert_close(out[..., d:], ref[..., :-d], atol=1e-5, rtol=1e-5)
    tail = torch.cat([out, head.flush(state)], dim=-1)[..., d:]
    torch.testing.assert_close(tail[..., : ref.shape[-1]], ref, atol=1e-5, rtol=1e-5)
    # empty chunks keep the state
    y, s2 = head.step(x[..., :0], state)
    assert y.shape[-1] == 0 and torch.equal(s2[0], state[0])


@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_convnext_stack_streams_like_offline(chunk):
    stack = ConvNeXtStack(8, 2, kernel_size=5, mlp_ratio=2.0, layer_scale=0.5, dilations=[1, 2])
    x = torch.randn(2, 8, 17)
    ref = stack(x)
    out, _ = stream(stack, x, chunk)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_folding_layer_scale_keeps_outputs():
    import copy

    from sonotok.modules.convnext import ConvNeXtMLP, ConvNeXtStack, fold_layer_scale

    torch.manual_seed(0)
    stack = ConvNeXtStack(8, 2, 5).eval()
    for m in stack.modules():
        if isinstance(m, ConvNeXtMLP):
            m.gamma.data.uniform_(0.2, 2.0)
    x = torch.randn(2, 8, 30)
    folded = fold_layer_scale(copy.deepcopy(stack))
    assert all(m.gamma is None for m in folded.modules() if isinstance(m, ConvNeXtMLP))
    torch.testing.assert_close(folded(x), stack(x), rtol=1e-5, atol=1e-6)
    y, _ = folded.step(x, folded.init_state(2))
    torch.testing.assert_close(y, stack(x), rtol=1e-5, atol=1e-6)
