"""Causal STFT front end and a streaming inverse-STFT head.

* :class:`CausalSTFT` computes a short-time Fourier transform whose frame ``t`` covers the input
  samples ``[(t + 1) * hop - n_fft, (t + 1) * hop)``: it only looks back, so frame ``t`` is complete
  as soon as sample ``(t + 1) * hop - 1`` has arrived. It is fixed (not learned): windowed frames and a
  real FFT, following the streaming protocol of :mod:`sonotok.modules.conv` exactly (state = the last
  ``n_fft - hop`` input samples).
* :class:`ISTFTHead` maps a feature sequence ``[B, D, T]`` to log-magnitude and phase (as an
  unnormalized 2-D vector per bin) of ``n_fft // 2 + 1`` bins, takes the inverse real FFT of every frame,
  applies the synthesis window and overlap-adds. Frame ``t`` is placed on the same samples the analysis
  frame ``t`` covered, so the offline output is time-aligned with the codec input. Streaming keeps the
  overlap tail (``n_fft - hop`` samples) as explicit state and emits the samples that no future frame
  touches: the streamed output lags the offline output by ``delay = n_fft - hop`` samples
  (the decoder's algorithmic delay; ``Codec.decoder_delay`` is derived from it), and ``flush`` returns the
  last ``delay`` samples, so stream + flush minus the first ``delay`` samples equals the offline output
  exactly (the overlap-add of the frames that exist: the last ``delay`` samples are covered by fewer
  frames, as if the signal continued with frames of zero spectrum).

References:
    Siuzdak, 2023, "Vocos: Closing the gap between time-domain and Fourier-based neural vocoders".
    Ji et al., 2024, "WavTokenizer: an Efficient Acoustic Discrete Codec Tokenizer".
"""


from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _window(n_fft: int, kind: str) -> Tensor:
    if kind == "hann":
        return torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    if kind == "sqrt_hann":
        return torch.hann_window(n_fft, periodic=True, dtype=torch.float64).sqrt()
    raise ValueError(f"unknown window {kind!r}: expected 'hann' or 'sqrt_hann'")


class CausalSTFT(nn.Module):
    """Causal, streamable STFT features ``[B, 1, T] -> [B, F, ceil(T / hop)]``.

    Args:
        n_fft: FFT size (= window length).
        hop_length: hop in samples (must divide ``n_fft``).
        window: ``"hann"`` or ``"sqrt_hann"``.
        features: ``"complex"`` returns real and imaginary parts (``2 * n_bins`` channels);
            ``"logmag_complex"`` returns ``log(|S| + eps)`` and the power-law compressed complex
            spectrum ``|S|^c * S / |S|`` (``3 * n_bins`` channels), a scale-robust encoder input.
        compress_power: ``c`` above.
        eps: floor of the log magnitude.
    """

    num_states: int

    def __init__(
        self,
        n_fft: int = 640,
        hop_length: int = 160,
        window: str = "hann",
        features: str = "logmag_complex",
        compress_power: float = 0.3,
        eps: float = 1e-5,
    ):
        super().__init__()
        if n_fft % hop_length:
            raise ValueError(f"hop_length ({hop_length}) must divide n_fft ({n_fft})")
        if features not in ("complex", "logmag_complex"):
            raise ValueError(f"unknown features {features!r}: expected 'complex' or 'logmag_complex'")
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.n_bins = self.n_fft // 2 + 1
        self.features = features
        self.compress_power = float(compress_power)
        self.eps = float(eps)
        self.padding = self.n_fft - self.hop_length
        self.num_states = 1
        self.register_buffer("window", _window(self.n_fft, window).float(), persistent=False)
        self.out_channels = 3 * self.n_bins if features == "logmag_complex" else 2 * self.n_bins

    def _spec(self, x: Tensor) -> Tensor:
        """Windowed DFT of every complete frame of ``x [B, 1, T]``: ``[B, 2 * n_bins, frames]``.

        The frames are an unfold (a view) of the signal and the transform is a real FFT: no convolution
        call (whose fixed cost dominates a one-frame streaming step) and no ``n_fft x n_fft`` basis to
        read from memory every frame.
        """
        frames = x[:, 0].unfold(-1, self.n_fft, self.hop_length) * self.window  # [B, frames, n_fft]
        spec = torch.fft.rfft(frames, dim=-1)  # [B, frames, n_bins]
        return torch.cat([spec.real, spec.imag], dim=-1).transpose(1, 2)

    def _features(self, spec: Tensor) -> Tensor:
        if self.features == "complex":
            return spec
        re, im = spec[:, : self.n_bins], spec[:, self.n_bins :]
        mag2 = re.square() + im.square()
        logmag = 0.5 * torch.log(mag2 + self.eps * self.eps)
        scale = (mag2 + 1e-12).pow((self.compress_power - 1.0) / 2.0)
        return torch.cat([logmag, re * scale, im * scale], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, 1, T] -> [B, F, ceil(T / hop)]`` (left-padded with ``n_fft - hop`` zeros)."""
        assert x.dim() == 3 and x.shape[1] == 1, f"CausalSTFT expects [B, 1, T], got {list(x.shape)}"
        extra = (-x.shape[-1]) % self.hop_length
        x = F.pad(x, (self.padding, extra))
        return self._features(self._spec(x))

    def init_state(self, batch: int) -> List[Tensor]:
        b = self.window
        return [torch.zeros(batch, 1, self.padding, device=b.device, dtype=b.dtype)]

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Stream ``x [B, 1, t]`` (any ``t``); returns every complete frame."""
        buf = torch.cat([state[0], x], dim=-1)
        n = (buf.shape[-1] - self.n_fft) // self.hop_length + 1
        if n <= 0:
            return buf.new_zeros(buf.shape[0], self.out_channels, 0), [buf]
        used = (n - 1) * self.hop_length + self.n_fft
        y = self._features(self._spec(buf[..., :used]))
        return y, [buf[..., n * self.hop_length :]]


class ISTFTHead(nn.Module):
    """Predict a spectrum per frame and synthesize audio by inverse STFT with streaming overlap-add.

    ``x [B, D, T] -> wav [B, 1, T * hop]``. The projection outputs, per bin, a log-magnitude and a 2-D
    phase vector ``(u, v)``; the spectrum is ``exp(logmag) * (u + i v) / |u + i v|`` (a unit phasor,
    free of the 2-pi wrap of a predicted angle).

    Offline, frame ``t`` is placed on samples ``[(t + 1) * hop - n_fft, (t + 1) * hop)`` (the samples its
    analysis frame saw) and the first ``delay = n_fft - hop`` samples of the overlap-add, which lie before
    time zero, are dropped: the output is aligned with the input. Streaming ``step`` emits ``t * hop``
    samples per ``t`` frames that are final (no later frame touches them), so the stream equals the
    offline output delayed by ``delay`` samples, the first ``delay`` streamed samples being the
    pre-roll. ``flush(state)`` returns the remaining ``delay`` samples at the end of a stream: the offline
    output's last ``delay`` samples, which only the last ``n_fft / hop - 1`` frames reach.

    The overlap-add is normalised per sample phase (``t mod hop``) by the sum of analysis x synthesis
    windows over the hops, so a spectrum analysed with the Hann window resynthesizes exactly for any
    hop dividing ``n_fft`` (not only under the constant-overlap-add condition).

    Args:
        dim: input channels.
        n_fft: FFT size of the synthesis frames.
        hop_length: hop in samples (must divide ``n_fft``).
        window: synthesis window, ``"hann"`` or ``"sqrt_hann"``; the overlap-add is normalized so a
            spectrum analysed with the same window resynthesizes exactly.
        max_log_mag: clamp of the predicted log-magnitude (Vocos clips the magnitude at 100).
    """

    num_states: int

    def __init__(
        self,
        dim: int,
        n_fft: int = 640,
        hop_length: int = 160,
        window: str = "hann",
        max_log_mag: float = 4.6,
    ):
        super().__init__()
        if n_fft % hop_length:
            raise ValueError(f"hop_length ({hop_length}) must divide n_fft ({n_fft})")
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.n_bins = self.n_fft // 2 + 1
        self.delay = self.n_fft - self.hop_length
        self.max_log_mag = float(max_log_mag)
        self.num_states = 1
        self.proj = nn.Conv1d(dim, 3 * self.n_bins, 1)
        w = _window(self.n_fft, window)
        # Overlap-add normalisation: analysis (hann) x synthesis window summed over the hops, per phase of
        # the hop (exact for any overlap; constant, i.e. the same for every phase, under COLA). Phases no
        # window covers (hop == n_fft) cannot be reconstructed and keep the mean.
        ana = _window(self.n_fft, "hann") if window == "hann" else w
        env = (ana * w).reshape(-1, self.hop_length).sum(0)
        env = torch.where(env > 1e-6 * env.max(), env, env.mean())
        self.register_buffer("window", (w / env.repeat(self.n_fft // self.hop_length)).float(), persistent=False)
        # Start the log-magnitude low (quiet output) and phase vectors random, as Vocos does implicitly.
        with torch.no_grad():
            self.proj.bias[: self.n_bins].fill_(-3.0)

    def spectrum(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """``x [B, D, T] -> (real, imag)`` each ``[B, T, n_bins]`` (frames first, as the inverse FFT wants)."""
        # the 1x1 convolution as a matrix product on [B, T, D] (no convolution call, no transposes after)
        h = F.linear(x.transpose(1, 2), self.proj.weight[..., 0], self.proj.bias)  # [B, T, 3 * n_bins]
        logmag, u, v = h.split(self.n_bins, dim=-1)
        mag = torch.exp(logmag.clamp(max=self.max_log_mag))
        scale = mag * torch.rsqrt(u.square() + v.square() + 1e-8)
        return u * scale, v * scale

    def _frames(self, x: Tensor) -> Tensor:
        re, im = self.spectrum(x)
        spec = torch.complex(re.float(), im.float())  # [B, T, n_bins]
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=-1) * self.window  # [B, T, n_fft]
        return frames.to(x.dtype)

    def _overlap_add(self, frames: Tensor) -> Tensor:
        """``[B, T, n_fft] -> [B, 1, (T - 1) * hop + n_fft]``."""
        b, t, n = frames.shape
        out = F.fold(
            frames.transpose(1, 2),
            output_size=(1, (t - 1) * self.hop_length + n),
            kernel_size=(1, n),
            stride=(1, self.hop_length),
        )
        return out.reshape(b, 1, -1)

    def forward(self, x: Tensor) -> Tensor:
        """Offline synthesis aligned with the input: ``[B, D, T] -> [B, 1, T * hop]``."""
        y = self._overlap_add(self._frames(x))
        return y[..., self.delay :]

    def init_state(self, batch: int) -> List[Tensor]:
        """State: the overlap tail (``n_fft - hop`` samples), initially zeros."""
        w = self.proj.weight
        return [torch.zeros(batch, 1, self.delay, device=w.device, dtype=w.dtype)]

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Stream ``x [B, D, t]``; returns ``t * hop`` final samples (delayed by ``delay``)."""
        tail = state[0]
        t = x.shape[-1]
        if t == 0:
            return tail.new_zeros(tail.shape[0], 1, 0), [tail]
        y = self._overlap_add(self._frames(x))
        y = torch.cat([y[..., : self.delay] + tail, y[..., self.delay :]], dim=-1)
        n_out = t * self.hop_length
        return y[..., :n_out], [y[..., n_out:]]

    def flush(self, state: List[Tensor]) -> Tensor:
        """The last ``delay`` samples of a stream ``[B, 1, delay]``: the overlap tail, which no further frame
        completes (equal to the offline output's last ``delay`` samples). ``state`` is not changed."""
        return state[0]
