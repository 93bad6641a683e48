"""Causal, streaming-ready 1-D convolutions.

Each layer works two ways with identical results:

* offline: ``forward(x)`` on a whole signal ``[B, C, T]``;
* streaming: ``step(x, state) -> (y, state)`` on consecutive chunks of any size, with the state
  created by ``init_state(batch)``. State is an explicit ``List[Tensor]`` so the layers can be
  scripted with TorchScript and exported with ``torch.export``.

Causality follows EnCodec (Défossez et al., 2022, "High Fidelity Neural Audio Compression"):
all padding of a convolution is on the left, so output frame ``n`` only sees inputs up to the last
sample of frame ``n``; a transposed convolution keeps its overlap tail for the next frame instead of
waiting for the future.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrizations, parametrize

# Streaming steps that yield at most this many output frames compute them as a matrix product
# (see ``StreamingConv1d._conv_few_frames``); longer chunks use the convolution kernels.
_SMALL_STEP_FRAMES = 8

# attribute of a module's __dict__ holding inference_weight's cached value (not a buffer: never saved)
_CACHE_ATTR = "_sonotok_inference_weight"


def _apply_norm(module: nn.Module, norm: str) -> nn.Module:
    if norm == "weight_norm":
        return parametrizations.weight_norm(module)
    if norm in ("none", "", None):
        return module
    raise ValueError(f"unknown norm {norm!r}: expected 'weight_norm' or 'none'")


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Remove weight-norm parametrizations in place, keeping the effective weights (for export).

    ``torch.nn.utils.parametrize.remove_parametrizations`` deletes the property from the module's
    parametrized class, and ``copy.deepcopy`` shares that class between the original and the copy,
    so folding a copy with it would break the original. Here each module is rolled back to its plain
    class by itself and the shared class is left alone.
    """
    for m in list(module.modules()):
        m.__dict__.pop(_CACHE_ATTR, None)  # inference_weight's cache
        if not parametrize.is_parametrized(m):
            continue
        with torch.no_grad():
            values = {name: getattr(m, name).detach().clone() for name in m.parametrizations.keys()}
        grads = {name: m.parametrizations[name].original0.requires_grad
                 if hasattr(m.parametrizations[name], "original0")
                 else m.parametrizations[name].original.requires_grad
                 for name in values}
        del m.parametrizations
        m.__class__ = type(m).__bases__[0]
        for name, value in values.items():
            m.register_parameter(name, nn.Parameter(value, requires_grad=grads[name]))
    return module


def inference_weight(module: nn.Module) -> Tensor:
    """``module.weight``, computed once per version of its weight-norm tensors while no gradient is needed.

    A weight-norm parametrization recomputes ``g * v / |v|`` on every access, i.e. on every forward call
    and, in a streaming step, on every chunk: for the large low-rate convolutions of a codec that is a full
    pass over a multi-megabyte weight per call. Without autograd (``torch.no_grad`` /
    ``torch.inference_mode``: evaluation, tokenization, eager streaming) the value only changes when the
    parametrization's tensors do, so it is kept with the identity, storage and version counter of each of
    those tensors and recomputed when any of them changes (an optimizer step, ``load_state_dict``,
    ``.to()``). The cached value is the parametrization's own output, so results are bitwise those of
    the training path. With gradients enabled (training) or while ``torch.compile`` / ``torch.export``
    traces, this is ``module.weight``. Modules without a parametrization return ``module.weight``.
    Writes through ``tensor.data`` bypass version counters: change weights in place under ``torch.no_grad()``
    (as optimizers do) or with ``load_state_dict``.
    """
    if torch.is_grad_enabled():
        return module.weight
    plist = module._modules.get("parametrizations")  # direct dict look-ups: this runs on every call
    p = plist._modules.get("weight") if plist is not None else None
    if p is None or torch.compiler.is_compiling():
        return module.weight
    cached = module.__dict__.get(_CACHE_ATTR)  # (parametrization, ((name, tensor, storage, version), ...), weight)
    if cached is not None and cached[0] is p:
        valid = True
        for name, t, ptr, version in cached[1]:
            if p._parameters.get(name) is not t or t.data_ptr() != ptr or t._version != version:
                valid = False
                break
        if valid:
            return cached[2]
    w = module.weight
    key = tuple((name, t, t.data_ptr(), t._version) for name, t in p._parameters.items())
    module.__dict__[_CACHE_ATTR] = (p, key, w)
    return w


class InferenceConv1d(nn.Conv1d):
    """``nn.Conv1d`` whose eager inference reads its (weight-normalised) weight through :func:`inference_weight`.

    For convolutions used as plain ``torch.nn`` layers (DAC's), wrapped in
    ``parametrizations.weight_norm`` as usual; the state-dict keys are those of ``nn.Conv1d``.
    """

    def forward(self, x: Tensor) -> Tensor:
        if torch.jit.is_scripting():
            return self._conv_forward(x, self.weight, self.bias)
        return self._forward_eager(x)

    @torch.jit.unused
    def _forward_eager(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, inference_weight(self), self.bias)


class InferenceConvTranspose1d(nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` counterpart of :class:`InferenceConv1d` (its ``output_padding``, no ``output_size``)."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.jit.is_scripting():
            return self._convtr(x, self.weight)
        return self._forward_eager(x)

    def _convtr(self, x: Tensor, w: Tensor) -> Tensor:
        return F.conv_transpose1d(x, w, self.bias, self.stride, self.padding, self.output_padding, self.groups,
                                  self.dilation)

    @torch.jit.unused
    def _forward_eager(self, x: Tensor) -> Tensor:
        return self._convtr(x, inference_weight(self))


class StreamingConv1d(nn.Module):
    """Causal 1-D convolution with explicit streaming state.

    Offline, the input is left-padded by ``(kernel_size - 1) * dilation + 1 - stride`` samples
    (zeros, or replicate/reflect of the first sample is avoided on purpose: zeros are what streaming
    starts from) and right-padded to a whole number of strides, so ``T_out = ceil(T / stride)``.
    Streaming emits an output frame as soon as its receptive field is complete; for inputs whose
    length is a multiple of the stride the concatenated streamed output equals the offline output.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel size (must be >= stride).
        stride: stride.
        dilation: dilation.
        groups: groups.
        bias: whether to use a bias.
        norm: ``"weight_norm"`` or ``"none"``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        norm: str = "weight_norm",
    ):
        super().__init__()
        if kernel_size < stride:
            raise ValueError(f"kernel_size ({kernel_size}) must be >= stride ({stride})")
        self.conv = _apply_norm(
            nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation, groups=groups, bias=bias),
            norm,
        )
        self.in_channels = in_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.dilation = dilation
        self.effective_kernel = (kernel_size - 1) * dilation + 1
        self.padding = self.effective_kernel - stride
        self.small_step_frames = _SMALL_STEP_FRAMES

    def forward(self, x: Tensor) -> Tensor:
        """Offline causal convolution. ``x: [B, C, T] -> [B, C', ceil(T / stride)]``."""
        length = x.shape[-1]
        extra = (-length) % self.stride
        if self.padding > 0 or extra > 0:  # F.pad copies even when it pads nothing (1x1 convolutions)
            x = F.pad(x, (self.padding, extra))
        return self._conv(x)

    def _conv(self, x: Tensor) -> Tensor:
        """``self.conv(x)``; eager inference uses the weight computed once (:func:`inference_weight`)."""
        if torch.jit.is_scripting():
            return self.conv(x)
        return self._conv_eager(x)

    @torch.jit.unused
    def _conv_eager(self, x: Tensor) -> Tensor:
        return self.conv._conv_forward(x, inference_weight(self.conv), self.conv.bias)

    def _weight(self) -> Tensor:
        if torch.jit.is_scripting():
            return self.conv.weight
        return self._weight_eager()

    @torch.jit.unused
    def _weight_eager(self) -> Tensor:
        return inference_weight(self.conv)

    def init_state(self, batch: int) -> List[Tensor]:
        """State: the inputs not yet consumed, starting with ``padding`` zeros."""
        w = self._weight()
        return [torch.zeros(batch, self.in_channels, self.padding, device=w.device, dtype=w.dtype)]

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Process one chunk ``x: [B, C, t]`` (any ``t >= 0``); returns every complete output frame."""
        buf = torch.cat([state[0], x], dim=-1)
        n = (buf.shape[-1] - self.effective_kernel) // self.stride + 1
        if n <= 0:
            y = buf.new_zeros(buf.shape[0], self.conv.out_channels, 0)
            return y, [buf]
        used = (n - 1) * self.stride + self.effective_kernel
        if n <= self.small_step_frames:
            y = self._conv_few_frames(buf[..., :used])
        else:
            y = self._conv(buf[..., :used])
        return y, [buf[..., n * self.stride :]]

    def _conv_few_frames(self, x: Tensor) -> Tensor:
        """The same convolution as ``self.conv(x)`` written as one product over the input's frames.

        A streaming step produces one or two output frames, where a convolution call's fixed cost
        (oneDNN set-up, im2col) is many times the arithmetic; an unfold (a view) and a matrix product
        or a multiply-sum cost a few microseconds. Dense and depthwise convolutions take this path;
        other groupings use the convolution.
        """
        w = self._weight()  # [out, in / groups, kernel]
        groups = self.conv.groups
        cols = x.unfold(-1, self.effective_kernel, self.stride)  # [B, C, n, effective kernel]
        if self.dilation > 1:
            cols = cols[..., :: self.dilation]  # [B, C, n, kernel]
        b = self.conv.bias
        if groups == 1:
            bsz, c, n, k = cols.shape
            y = torch.matmul(cols.permute(0, 2, 1, 3).reshape(bsz, n, c * k), w.reshape(w.shape[0], c * k).t())
            if b is not None:
                y = y + b
            return y.transpose(1, 2)
        if groups == self.in_channels and w.shape[0] == groups:
            y = (cols * w[:, 0, :].unsqueeze(1)).sum(-1)  # [B, C, n]
            if b is not None:
                y = y + b.unsqueeze(-1)
            return y
        return self._conv(x)


class StreamingConvTranspose1d(nn.Module):
    """Causal 1-D transposed convolution with explicit streaming state.

    Offline, the full transposed convolution is computed and its last ``kernel_size - stride``
    samples (the part that depends on future frames) are trimmed, so ``T_out = T * stride``.
    Streaming keeps that overlap tail (without bias) as state and adds it to the next chunk.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel size (must be >= stride).
        stride: stride (upsampling factor).
        bias: whether to use a bias.
        norm: ``"weight_norm"`` or ``"none"``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        bias: bool = True,
        norm: str = "weight_norm",
    ):
        super().__init__()
        if kernel_size < stride:
            raise ValueError(f"kernel_size ({kernel_size}) must be >= stride ({stride})")
        self.convtr = _apply_norm(nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, bias=False), norm)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.tail = kernel_size - stride
        self.small_step_frames = _SMALL_STEP_FRAMES

    def _add_bias(self, y: Tensor) -> Tensor:
        b = self.bias
        if b is not None:
            y = y + b.view(1, -1, 1)
        return y

    def forward(self, x: Tensor) -> Tensor:
        """Offline causal transposed convolution. ``x: [B, C, T] -> [B, C', T * stride]``.

        The bias goes into the convolution call (one pass over the output instead of two; the same values
        as adding it afterwards, which streaming does because its overlap tail excludes the bias).
        """
        y = F.conv_transpose1d(x, self._weight(), self.bias, self.stride)
        if self.tail > 0:
            y = y[..., : y.shape[-1] - self.tail]
        return y

    def _weight(self) -> Tensor:
        if torch.jit.is_scripting():
            return self.convtr.weight
        return self._weight_eager()

    @torch.jit.unused
    def _weight_eager(self) -> Tensor:
        return inference_weight(self.convtr)

    def _convtr(self, x: Tensor) -> Tensor:
        """``self.convtr(x)`` (no bias) with the weight of :meth:`_weight`."""
        return F.conv_transpose1d(x, self._weight(), None, self.stride)

    def init_state(self, batch: int) -> List[Tensor]:
        """State: the overlap tail of the previous chunk (bias excluded)."""
        w = self._weight()
        return [torch.zeros(batch, self.out_channels, self.tail, device=w.device, dtype=w.dtype)]

    def _convtr_few_frames(self, x: Tensor) -> Tensor:
        """``self.convtr(x)`` (no bias) as one matrix product and an overlap-add (cheaper for a few frames)."""
        w = self._weight()  # [in, out, kernel]
        bsz, c, t = x.shape
        cols = torch.matmul(x.transpose(1, 2), w.reshape(c, -1))  # [B, t, out * kernel]
        if self.tail == 0:  # kernel == stride: frames do not overlap
            return cols.reshape(bsz, t, self.out_channels, self.kernel_size).permute(0, 2, 1, 3).reshape(
                bsz, self.out_channels, t * self.kernel_size
            )
        out = nn.functional.fold(
            cols.transpose(1, 2),
            output_size=(1, (t - 1) * self.stride + self.kernel_size),
            kernel_size=(1, self.kernel_size),
            stride=(1, self.stride),
        )
        return out.reshape(bsz, self.out_channels, -1)

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Process ``x: [B, C, t]`` frames; returns ``t * stride`` output samples."""
        tail = state[0]
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], self.out_channels, 0), [tail]
        t = x.shape[-1]
        y = self._convtr_few_frames(x) if t <= self.small_step_frames else self._convtr(x)
        if self.tail > 0:
            y[..., : self.tail].add_(tail)  # y is this call's own output: add the overlap in place (no cat copy)
            out = y[..., : y.shape[-1] - self.tail]
            new_tail = y[..., y.shape[-1] - self.tail :]
        else:
            out = y
            new_tail = tail
        return self._add_bias(out), [new_tail]
