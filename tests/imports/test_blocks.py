"""The streaming building blocks behind the imported codecs: stepping equals the offline pass, and they script."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sonotok.modules.lstm import StreamingLSTM
from sonotok.modules.reflect_conv import AlignedResidual, ReflectPadConv1d, reflect_pad
from sonotok.modules.resample_conv import GroupedConvTranspose1d, ReplicateStartConv1d
from sonotok.modules.streaming import Stateless, StreamingSequential
from sonotok.modules.transformer import StreamingTransformer


def _stream(module, x, chunk):
    state = module.init_state(x.shape[0])
    ys = []
    for i in range(0, x.shape[-1], chunk):
        y, state = module.step(x[..., i : i + chunk], state)
        ys.append(y)
    return torch.cat(ys, -1)


@pytest.mark.parametrize("context,chunk", [(3, 1), (3, 2), (3, 5), (1, 2), (8, 3)])
def test_transformer_steps_equal_offline_beyond_the_context(context, chunk):
    torch.manual_seed(0)
    tr = StreamingTransformer(16, 4, 2, 32, context=context, layer_scale=0.5).eval()
    x = torch.randn(2, 16, 13)  # 13 frames: several times the context
    with torch.no_grad():
        off = tr(x)
        st = _stream(tr, x, chunk)
    assert st.shape == off.shape and (st - off).abs().max() < 1e-5
    # the context really bounds attention: changing frame 0 leaves frames >= context unchanged
    x2 = x.clone()
    x2[..., 0] += 1.0
    with torch.no_grad():
        diff = (tr(x2) - off).abs().amax(dim=(0, 1))
    reach = 2 * (context - 1)  # 2 layers, each sees context - 1 frames back
    assert diff[0] > 1e-3 and diff[min(reach, 12)] > 0
    if reach + 1 < 13:
        assert diff[reach + 1 :].max() == 0.0


class _Stepper(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor, state: list[torch.Tensor]):
        return self.inner.step(x, state)

    @torch.jit.export
    def init_state(self, batch: int) -> list[torch.Tensor]:
        return self.inner.init_state(batch)


def test_transformer_scripts_and_matches_eager():
    tr = StreamingTransformer(16, 4, 1, 32, context=4).eval()
    x = torch.randn(1, 16, 9)
    scripted = torch.jit.script(_Stepper(tr))
    with torch.no_grad():
        assert (torch.jit.script(tr)(x) - tr(x)).abs().max() < 1e-6
        y1, _ = tr.step(x, tr.init_state(1))
        y2, _ = scripted(x, scripted.init_state(1))
    assert (y1 - y2).abs().max() < 1e-6


@pytest.mark.parametrize("kernel,stride,dilation", [(7, 1, 1), (3, 1, 2), (4, 2, 1), (10, 5, 1), (1, 1, 1)])
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_reflect_conv_streams_like_offline(kernel, stride, dilation, chunk):
    torch.manual_seed(1)
    conv = ReflectPadConv1d(3, 5, kernel, stride, dilation=dilation).eval()
    x = torch.randn(2, 3, 60)  # a multiple of every stride
    with torch.no_grad():
        off = conv(x)
        st = _stream(conv, x, chunk)
    assert off.shape[-1] == -(-60 // stride)
    assert st.shape == off.shape and (st - off).abs().max() < 1e-5


def test_reflect_pad_matches_torch_and_short_inputs():
    x = torch.arange(10.0).view(1, 1, 10)
    assert torch.equal(reflect_pad(x, 3, 2), F.pad(x, [3, 2], mode="reflect"))
    short = torch.tensor([[[1.0, 2.0]]])
    assert reflect_pad(short, 4, 0).shape[-1] == 6  # longer than the input: zero-extended first, as EnCodec


def test_aligned_residual_realigns_a_delayed_branch():
    torch.manual_seed(2)
    block = StreamingSequential(Stateless(torch.nn.ELU()), ReflectPadConv1d(4, 4, 5))  # starts 4 samples late
    res = AlignedResidual(block, ReflectPadConv1d(4, 4, 1), 4).eval()
    x = torch.randn(1, 4, 40)
    with torch.no_grad():
        assert (_stream(res, x, 3) - res(x)).abs().max() < 1e-5


@pytest.mark.parametrize("chunk", [1, 4, 11])
def test_lstm_and_resampling_convs_stream_like_offline(chunk):
    torch.manual_seed(3)
    x = torch.randn(2, 6, 24)
    for module in (StreamingLSTM(6, 2), ReplicateStartConv1d(6, 6, 4, 2), GroupedConvTranspose1d(6, 6, 4, 2, groups=6)):
        module.eval()
        with torch.no_grad():
            off, st = module(x), _stream(module, x, chunk)
        assert st.shape == off.shape and (st - off).abs().max() < 1e-5, type(module).__name__
