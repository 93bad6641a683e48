"""Streamed == offline and causality for the streaming conv / transposed conv layers.

Parametrized over kernel, stride, dilation and chunk size (1 sample, odd, one frame, many frames).
"""

import copy
import itertools

import pytest
import torch

from sonotok.modules.conv import StreamingConv1d, StreamingConvTranspose1d, fold_weight_norm
from sonotok.modules.streaming import Conv, Stateless, StreamingResidual, StreamingSequential

ATOL = 1e-5


def _stream(layer, x, chunk):
    state = layer.init_state(x.shape[0])
    outs = []
    for i in range(0, x.shape[-1], chunk):
        y, state = layer.step(x[..., i : i + chunk], state)
        outs.append(y)
    return torch.cat(outs, dim=-1), state


CONV_CASES = [
    (k, s, d)
    for k, s, d in itertools.product((1, 2, 3, 4, 7), (1, 2, 3, 4), (1, 2, 3))
    if k >= s and not (k == 1 and d > 1)
]


def _chunks(stride):
    # 1 sample, odd, one frame (= stride), many frames (+ a remainder)
    return sorted({1, 5, stride, 4 * stride + 1})


@pytest.mark.parametrize("kernel,stride,dilation", CONV_CASES)
@pytest.mark.parametrize("norm", ["weight_norm", "none"])
def test_conv_stream_equals_offline(kernel, stride, dilation, norm):
    layer = StreamingConv1d(3, 4, kernel, stride=stride, dilation=dilation, norm=norm).eval()
    x = torch.randn(2, 3, 12 * stride)
    ref = layer(x)
    assert ref.shape[-1] == 12
    for chunk in _chunks(stride):
        y, _ = _stream(layer, x, chunk)
        assert y.shape == ref.shape, (chunk, y.shape, ref.shape)
        torch.testing.assert_close(y, ref, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("kernel,stride,dilation", [(7, 1, 1), (5, 1, 3), (4, 2, 1), (6, 3, 2)])
def test_conv_step_paths_agree(groups, kernel, stride, dilation):
    """Steps of few frames (matrix-product path: dense, depthwise; grouped falls back to the conv) and
    one long step (convolution kernel) give the offline output."""
    layer = StreamingConv1d(4, 4, kernel, stride=stride, dilation=dilation, groups=groups, norm="none").eval()
    assert layer.small_step_frames < 20
    x = torch.randn(2, 4, 20 * stride)
    ref = layer(x)
    for chunk in (1, stride, 3 * stride, x.shape[-1]):
        y, _ = _stream(layer, x, chunk)
        torch.testing.assert_close(y, ref, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("kernel,stride", [(2, 2), (8, 4), (3, 1)])
def test_convtr_step_paths_agree(kernel, stride):
    layer = StreamingConvTranspose1d(3, 5, kernel, stride=stride, norm="none").eval()
    x = torch.randn(2, 3, 20)
    ref = layer(x)
    for chunk in (1, 2, 5, 20):  # 20 frames in one step: the transposed-convolution kernel
        y, _ = _stream(layer, x, chunk)
        torch.testing.assert_close(y, ref, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("kernel,stride,dilation", CONV_CASES)
def test_conv_causal(kernel, stride, dilation):
    """Appending input never changes earlier output (offline and streamed)."""
    layer = StreamingConv1d(2, 3, kernel, stride=stride, dilation=dilation).eval()
    x = torch.randn(1, 2, 6 * stride)
    more = torch.cat([x, torch.randn(1, 2, 5 * stride + 1)], dim=-1)
    torch.testing.assert_close(layer(more)[..., :6], layer(x), atol=ATOL, rtol=1e-5)
    # streamed: outputs emitted from the prefix are a prefix of the outputs of the longer stream
    y_short, _ = _stream(layer, x, 3)
    y_long, _ = _stream(layer, more, 3)
    torch.testing.assert_close(y_long[..., : y_short.shape[-1]], y_short, atol=ATOL, rtol=1e-5)
    # a change in the future does not change the past
    x2 = more.clone()
    x2[..., 6 * stride :] = torch.randn_like(x2[..., 6 * stride :])
    torch.testing.assert_close(layer(x2)[..., :6], layer(x), atol=ATOL, rtol=1e-5)


CONVTR_CASES = [(k, s) for k, s in itertools.product((1, 2, 3, 4, 5, 8), (1, 2, 3, 4)) if k >= s]


@pytest.mark.parametrize("kernel,stride", CONVTR_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_convtr_stream_equals_offline(kernel, stride, bias):
    layer = StreamingConvTranspose1d(3, 2, kernel, stride=stride, bias=bias).eval()
    if bias:
        torch.nn.init.normal_(layer.bias)
    x = torch.randn(2, 3, 11)
    ref = layer(x)
    assert ref.shape[-1] == 11 * stride
    # chunks in frames: 1 frame, odd, many frames; plus empty chunks in between
    for chunk in (1, 3, 5, 11):
        y, _ = _stream(layer, x, chunk)
        torch.testing.assert_close(y, ref, atol=ATOL, rtol=1e-5)
    state = layer.init_state(2)
    y0, state = layer.step(x[..., :0], state)
    assert y0.shape[-1] == 0


@pytest.mark.parametrize("kernel,stride", CONVTR_CASES)
def test_convtr_causal(kernel, stride):
    layer = StreamingConvTranspose1d(2, 2, kernel, stride=stride).eval()
    x = torch.randn(1, 2, 7)
    more = torch.cat([x, torch.randn(1, 2, 4)], dim=-1)
    torch.testing.assert_close(layer(more)[..., : 7 * stride], layer(x), atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("chunk", [1, 3, 4, 17])
def test_residual_stack_streams(chunk):
    block = StreamingSequential(
        Stateless(torch.nn.ELU()),
        Conv(4, 2, 3, dilation=3),
        Stateless(torch.nn.ELU()),
        Conv(2, 4, 1),
    )
    layer = StreamingSequential(Conv(1, 4, 5), StreamingResidual(block, Conv(4, 4, 1)), Conv(4, 4, 4, stride=2))
    layer.eval()
    x = torch.randn(1, 1, 40)
    ref = layer(x)
    y, state = _stream(layer, x, chunk)
    assert len(state) == layer.num_states
    torch.testing.assert_close(y, ref, atol=ATOL, rtol=1e-5)


def test_layers_script():
    """The streaming protocol compiles with TorchScript (class-level string annotations used to break it)."""
    layer = fold_weight_norm(StreamingSequential(Conv(1, 4, 5), Conv(4, 4, 4, stride=2)))
    scripted = torch.jit.script(layer)
    x = torch.randn(1, 1, 16)
    torch.testing.assert_close(scripted(x), layer(x))


def test_fold_weight_norm_of_a_copy_keeps_the_original():
    """Folding a deep copy must not break the original (deepcopy shares the parametrized class)."""
    layer = StreamingSequential(Conv(1, 4, 3), Conv(4, 2, 4, stride=2)).eval()
    x = torch.randn(1, 1, 16)
    ref = layer(x)
    folded = fold_weight_norm(copy.deepcopy(layer))
    torch.testing.assert_close(folded(x), ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(layer(x), ref)  # original still works, still parametrized
    assert any(torch.nn.utils.parametrize.is_parametrized(m) for m in layer.modules())
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in folded.modules())
    assert "conv.conv.weight" in dict(folded.layers[0].named_parameters())
