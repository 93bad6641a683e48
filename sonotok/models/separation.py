"""Conv-TasNet-style speech separation: learned filterbank encoder, TCN mask estimator, learned decoder.

Reference: Luo & Mesgarani, 2019, "Conv-TasNet: Surpassing Ideal Time-Frequency Magnitude Masking for
Speech Separation", IEEE/ACM TASLP 27(8). Paper configuration (best non-causal, table II):
N=512, L=16, B=128, H=512, P=3, X=8, R=3, gLN, sigmoid masks, 8 kHz -> 15.3 dB SI-SNRi on WSJ0-2mix;
the causal variant (cLN, causal depthwise convs) reaches 10.6 dB.

Composition (each part its own module so Hydra configs can swap them):

* :class:`FilterbankEncoder`: ``Conv1d(1, N, L, stride=L/2, bias=False)`` (+ optional ReLU);
* :class:`TCNMasker`: norm -> 1x1 (N -> B) -> :class:`~sonotok.modules.tcn.TCN` -> PReLU -> 1x1
  (B -> S*N) -> mask nonlinearity (sigmoid / relu / softmax over sources);
* :class:`FilterbankDecoder`: ``ConvTranspose1d(N, 1, L, stride)`` (no bias).

Alignment is the one torchaudio's ``ConvTasNet`` uses: the signal is padded by ``L - stride`` on both
sides (plus up to a stride at the end), so a model with the same hyper-parameters and copied weights
gives the same output (``tests/separation/test_separator.py``).

Windowed separation of long inputs: :func:`sonotok.models.separate.separate_chunked`; TorchScript export:
:mod:`sonotok.export.separator`.

Streaming (causal variant only): ``init_state(batch)`` and ``step(mix_chunk [B, 1, t], state) ->
(sources [B, S, t'], state)``. The encoder emits a frame once its ``L`` samples have arrived; the decoder
keeps its overlap tail as state. The concatenated streamed output equals the offline output delayed by
``delay_samples = L - stride`` samples (the first ``delay_samples`` streamed samples are the decoder's
pre-roll); feed ``delay_samples`` zeros at the end to flush the last samples.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor, nn

from sonotok.modules.streaming import Conv, ConvTranspose
from sonotok.modules.tcn import TCN, make_norm

MASKS = ("sigmoid", "relu", "softmax")


class FilterbankEncoder(nn.Module):
    """Learned analysis filterbank ``[B, 1, T] -> [B, N, M]`` (``stride = L // 2`` by default).

    Offline ``forward`` expects a signal already padded by the separator; ``step`` streams (state =
    the samples of the frame still filling).
    """

    def __init__(self, num_filters: int = 512, kernel_size: int = 16, stride: int | None = None, relu: bool = False):
        super().__init__()
        stride = int(stride or kernel_size // 2)
        if kernel_size % stride:
            raise ValueError(f"filterbank kernel_size ({kernel_size}) must be a multiple of its stride ({stride})")
        self.conv = Conv(1, num_filters, kernel_size, stride, bias=False, norm="none")
        self.num_filters = int(num_filters)
        self.kernel_size = int(kernel_size)
        self.stride = stride
        self.relu = bool(relu)
        self.num_states = 1

    @property
    def weight(self) -> Tensor:
        return self.conv.conv.conv.weight

    def _act(self, x: Tensor) -> Tensor:
        return torch.relu(x) if self.relu else x

    def forward(self, x: Tensor) -> Tensor:
        return self._act(nn.functional.conv1d(x, self.weight, stride=self.stride))

    def init_state(self, batch: int) -> List[Tensor]:
        return self.conv.init_state(batch)

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        y, state = self.conv.step(x, state)
        return self._act(y), state


class FilterbankDecoder(nn.Module):
    """Learned synthesis filterbank ``[B', N, M] -> [B', 1, (M - 1) * stride + L]`` (full overlap-add)."""

    def __init__(self, num_filters: int = 512, kernel_size: int = 16, stride: int | None = None):
        super().__init__()
        stride = int(stride or kernel_size // 2)
        self.convtr = ConvTranspose(num_filters, 1, kernel_size, stride, bias=False, norm="none")
        self.kernel_size = int(kernel_size)
        self.stride = stride
        self.num_states = 1

    @property
    def weight(self) -> Tensor:
        return self.convtr.convtr.convtr.weight

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.conv_transpose1d(x, self.weight, stride=self.stride)

    def init_state(self, batch: int) -> List[Tensor]:
        return self.convtr.init_state(batch)

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        return self.convtr.step(x, state)


class TCNMasker(nn.Module):
    """Conv-TasNet separation module: ``[B, N, M] -> masks [B, S, N, M]``.

    Args:
        num_filters: ``N`` (encoder channels).
        num_sources: ``S``.
        bottleneck: ``B``.
        hidden: ``H``.
        kernel_size: ``P``.
        num_layers: ``X``.
        num_stacks: ``R``.
        norm: ``gln`` (offline), ``cln`` or ``channel`` (causal).
        causal: causal depthwise convolutions (streamable).
        mask: ``sigmoid``, ``relu`` or ``softmax`` (over sources).
    """

    def __init__(self, num_filters: int = 512, num_sources: int = 2, bottleneck: int = 128, hidden: int = 512,
                 kernel_size: int = 3, num_layers: int = 8, num_stacks: int = 3, norm: str = "gln",
                 causal: bool = False, mask: str = "sigmoid"):
        super().__init__()
        if mask not in MASKS:
            raise ValueError(f"unknown mask nonlinearity {mask!r}: expected one of {MASKS}")
        if causal and norm == "gln":
            raise ValueError("a causal masker needs a causal norm: norm=cln or norm=channel (gln sees the future)")
        self.input_norm = make_norm(norm, num_filters)
        self.input_conv = nn.Conv1d(num_filters, bottleneck, 1)
        self.tcn = TCN(bottleneck, hidden, kernel_size, num_layers, num_stacks, norm=norm, causal=causal)
        self.output_prelu = nn.PReLU()
        self.output_conv = nn.Conv1d(bottleneck, num_filters * num_sources, 1)
        self.num_filters = int(num_filters)
        self.num_sources = int(num_sources)
        self.mask = mask
        self.causal = bool(causal)
        self.num_states = int(self.input_norm.num_states) + int(self.tcn.num_states)

    def _masks(self, y: Tensor) -> Tensor:
        y = self.output_conv(self.output_prelu(y))
        y = y.view(y.shape[0], self.num_sources, self.num_filters, y.shape[-1])
        if self.mask == "sigmoid":
            return torch.sigmoid(y)
        if self.mask == "relu":
            return torch.relu(y)
        return torch.softmax(y, dim=1)

    def forward(self, feats: Tensor) -> Tensor:
        return self._masks(self.tcn(self.input_conv(self.input_norm(feats))))

    def init_state(self, batch: int) -> List[Tensor]:
        return self.input_norm.init_state(batch) + self.tcn.init_state(batch)

    def step(self, feats: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        n = self.input_norm.num_states
        x, s1 = self.input_norm.step(feats, state[:n])
        y, s2 = self.tcn.step(self.input_conv(x), state[n:])
        return self._masks(y), s1 + s2


class ConvTasNet(nn.Module):
    """Conv-TasNet separator: ``mix [B, 1, T] -> sources [B, S, T]`` (paper reference in the module doc).

    Args:
        encoder: a :class:`FilterbankEncoder`.
        masker: a :class:`TCNMasker` (its ``num_sources`` is the model's).
        decoder: a :class:`FilterbankDecoder` with the same kernel size and stride.
        sample_rate: the rate the model works at (8000 in the paper).
        name: a short model name (model ids, meta.json).

    Attributes (sonotok model conventions): ``sample_rate``, ``channels`` (1), ``num_sources``,
    ``hop_length`` (encoder stride), ``frame_rate``, ``causal``, ``delay_samples`` (streamed output lags
    offline output by this), ``latency_samples`` / ``latency_ms`` (algorithmic latency when streaming:
    one filterbank window, ``L`` samples).
    """

    def __init__(self, encoder: FilterbankEncoder, masker: TCNMasker, decoder: FilterbankDecoder,
                 sample_rate: int = 8000, name: str = "convtasnet"):
        super().__init__()
        if encoder.kernel_size != decoder.kernel_size or encoder.stride != decoder.stride:
            raise ValueError(f"encoder (L={encoder.kernel_size}, stride={encoder.stride}) and decoder "
                             f"(L={decoder.kernel_size}, stride={decoder.stride}) filterbanks must match")
        self.encoder = encoder
        self.masker = masker
        self.decoder = decoder
        self.sample_rate = int(sample_rate)
        self.channels = 1
        self.num_sources = int(masker.num_sources)
        self.num_filters = int(encoder.num_filters)
        self.kernel_size = int(encoder.kernel_size)
        self.hop_length = int(encoder.stride)
        self.frame_rate = self.sample_rate / self.hop_length
        self.causal = bool(masker.causal)
        self.delay_samples = self.kernel_size - self.hop_length
        self.latency_samples = self.kernel_size
        self.latency_ms = 1000.0 * self.latency_samples / self.sample_rate
        self.name = name
        self.num_states = int(encoder.num_states) + int(masker.num_states) + int(decoder.num_states)

    # ---------------------------------------------------------------- offline
    def _pad(self, mix: Tensor) -> Tuple[Tensor, int]:
        length = mix.shape[-1]
        pad = self.delay_samples
        extra = (-length) % self.hop_length
        return nn.functional.pad(mix, (pad, pad + extra)), length

    def forward(self, mix: Tensor) -> Tensor:
        """Separate ``mix [B, 1, T]`` (or ``[B, T]``) into ``[B, S, T]``."""
        if mix.dim() == 2:
            mix = mix.unsqueeze(1)
        assert mix.dim() == 3 and mix.shape[1] == 1, f"expected mix [B, 1, T], got {list(mix.shape)}"
        x, length = self._pad(mix)
        feats = self.encoder(x)  # [B, N, M]
        masks = self.masker(feats)  # [B, S, N, M]
        masked = (masks * feats.unsqueeze(1)).flatten(0, 1)  # [B*S, N, M]
        out = self.decoder(masked)  # [B*S, 1, (M-1)*stride + L]
        out = out[..., self.delay_samples : self.delay_samples + length]
        return out.view(mix.shape[0], self.num_sources, length)

    @torch.jit.ignore
    def separate(self, wav: Tensor, sample_rate: int | None = None, chunk_seconds: float | None = 10.0) -> Tensor:
        """Separate ``[T]``, ``[C, T]`` or ``[B, C, T]`` audio (downmixed, resampled to the model rate).

        Inputs longer than ``chunk_seconds`` (plus context) are separated window by window in bounded memory
        (:func:`separate_chunked`); ``chunk_seconds=None`` runs the whole signal at once.

        Returns ``[B, S, T']`` at the model's rate (``[S, T']`` for an unbatched input).
        """
        single = wav.dim() < 3
        if wav.dim() == 1:
            wav = wav.view(1, 1, -1)
        elif wav.dim() == 2:
            wav = wav.unsqueeze(0)
        wav = wav.mean(dim=1, keepdim=True)
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            import torchaudio.functional as AF

            wav = AF.resample(wav, int(sample_rate), self.sample_rate)
        if chunk_seconds is None:
            out = self.forward(wav)
        else:
            from sonotok.models.separate import separate_chunked  # the file-level module imports this one

            out = separate_chunked(self, wav, int(round(chunk_seconds * self.sample_rate)))
        return out[0] if single else out

    # ---------------------------------------------------------------- streaming
    def init_state(self, batch: int) -> List[Tensor]:
        """Streaming state (causal models only)."""
        if not self.causal:
            raise RuntimeError("this separator is non-causal (gLN / symmetric convs): build it with causal=True to stream")
        # the decoder runs on B*S rows
        return (self.encoder.init_state(batch) + self.masker.init_state(batch)
                + self.decoder.init_state(batch * self.num_sources))

    def step(self, mix: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Stream one chunk ``mix [B, 1, t]`` (any ``t``); returns ``[B, S, t']`` finished samples.

        Over a stream, the concatenated output equals ``forward`` delayed by ``delay_samples``.
        """
        ne = self.encoder.num_states
        nm = self.masker.num_states
        feats, se = self.encoder.step(mix, state[:ne])
        if feats.shape[-1] == 0:  # no frame completed by this chunk
            return mix.new_zeros(mix.shape[0], self.num_sources, 0), se + state[ne:]
        masks, sm = self.masker.step(feats, state[ne : ne + nm])
        masked = (masks * feats.unsqueeze(1)).flatten(0, 1)
        out, sd = self.decoder.step(masked, state[ne + nm :])
        return out.view(mix.shape[0], self.num_sources, out.shape[-1]), se + sm + sd

    @torch.jit.ignore
    def stream(self, mix: Tensor, chunk: int) -> Tensor:
        """Convenience: stream ``mix [B, 1, T]`` in chunks of ``chunk`` samples, flush, and return output
        aligned with ``forward`` (``[B, S, T]``)."""
        state = self.init_state(mix.shape[0])
        flushed = torch.cat([mix, mix.new_zeros(mix.shape[0], 1, self.delay_samples + (-mix.shape[-1]) % self.hop_length)], -1)
        outs = []
        for i in range(0, flushed.shape[-1], chunk):
            y, state = self.step(flushed[..., i : i + chunk], state)
            outs.append(y)
        y = torch.cat(outs, -1)
        return y[..., self.delay_samples : self.delay_samples + mix.shape[-1]]


def conv_tasnet(num_sources: int = 2, N: int = 512, L: int = 16, B: int = 128, H: int = 512, P: int = 3,  # noqa: N803
                X: int = 8, R: int = 3, norm: str = "gln", causal: bool = False, mask: str = "sigmoid",
                sample_rate: int = 8000, encoder_relu: bool = False, name: str = "convtasnet") -> ConvTasNet:
    """Build a :class:`ConvTasNet` from the paper's hyper-parameter names."""
    return ConvTasNet(
        FilterbankEncoder(N, L, relu=encoder_relu),
        TCNMasker(N, num_sources, B, H, P, X, R, norm=norm, causal=causal, mask=mask),
        FilterbankDecoder(N, L),
        sample_rate=sample_rate,
        name=name,
    )


def load_torchaudio_weights(model: ConvTasNet, ref: nn.Module) -> ConvTasNet:
    """Copy the weights of a ``torchaudio.models.ConvTasNet`` into ``model`` (same hyper-parameters,
    ``norm="gln"``, non-causal). Parameter order is identical; only the names differ."""
    return copy_parameters(model, ref)


def copy_parameters(model: nn.Module, ref: nn.Module) -> nn.Module:
    """Copy ``ref``'s parameters into ``model`` in order (same shapes; names may differ): torchaudio's
    ConvTasNet into ours, or a non-causal (gLN) separator into its causal (cLN) twin, whose norms and
    convolutions have the same parameters under other names (``init_from`` of the causal preset)."""
    ours = [p for p in model.parameters()]
    theirs = [p for p in ref.parameters()]
    if len(ours) != len(theirs):
        raise ValueError(f"parameter tensors differ: ours {len(ours)}, the source's {len(theirs)}")
    with torch.no_grad():
        for a, b in zip(ours, theirs):
            if a.shape != b.shape and a.squeeze().shape != b.squeeze().shape:  # gLN [1, C, 1] vs cLN [C]
                raise ValueError(f"shape mismatch {list(a.shape)} vs {list(b.shape)}")
            a.copy_(b.reshape(a.shape))
    return model


def receptive_field_ms(model: ConvTasNet) -> float:
    """Receptive field of the masker in milliseconds (frames * stride + L)."""
    frames = model.masker.tcn.receptive_field
    return 1000.0 * ((frames - 1) * model.hop_length + model.kernel_size) / model.sample_rate


def num_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def context_samples(model: nn.Module) -> int:
    """Samples of input on each side that an output sample depends on (the masker's receptive field plus
    one filterbank window; the non-causal TCN is symmetric, so half its field on each side). Models
    without a TCN field (e.g. :class:`CodecLatentSeparator`) report one second."""
    tcn = getattr(getattr(model, "masker", None), "tcn", None)
    if tcn is None or not hasattr(model, "kernel_size"):
        return int(model.sample_rate)
    frames = int(tcn.receptive_field) - 1
    if not getattr(model, "causal", False):
        frames = (frames + 1) // 2
    return frames * int(model.hop_length) + int(model.kernel_size)


def macs_per_second(model: nn.Module, seconds: float = 1.0) -> float:
    """Multiply-accumulates per second of input audio of the offline forward (``torch.utils.flop_counter``
    counts convolutions and matmuls; one MAC = 2 FLOPs; norms and activations are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 1, int(round(seconds * model.sample_rate)))
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 2.0 / seconds


class CodecLatentSeparator(nn.Module):
    """A Conv-TasNet masker on a sonotok codec's latent: ``codec.encoder`` replaces the learned
    filterbank encoder and ``codec.decoder`` the filterbank decoder (a separation head on a trained codec).

    ``mix [B, 1, T] -> z = encoder(mix) [B, D, F] -> masks [B, S, D, F] -> decoder(mask * z)[..., :T]``.
    The codec is frozen by default (only the masker trains), so separated sources come out of the codec's
    own decoder; quality is bounded by the codec's reconstruction. Reference for the masker: Luo &
    Mesgarani, 2019 (Conv-TasNet); masking a learned latent is the same idea with a pretrained front end.

    Args:
        codec: a :class:`~sonotok.models.Codec` (e.g. ``sonotok.load("runs/tiny/model")`` in the config).
        masker: a :class:`TCNMasker` with ``num_filters`` equal to the codec's latent dimension.
        freeze_codec: keep the codec's weights fixed (they still live in this model's state dict).
        name: model name.
    """

    def __init__(self, codec: nn.Module, masker: TCNMasker, freeze_codec: bool = True,
                 name: str = "codec_latent_separator"):
        super().__init__()
        self.encoder = codec.encoder
        self.decoder = codec.decoder
        self.masker = masker
        self.freeze_codec = bool(freeze_codec)
        if self.freeze_codec:
            for p in list(self.encoder.parameters()) + list(self.decoder.parameters()):
                p.requires_grad_(False)
        self.sample_rate = int(codec.sample_rate)
        self.channels = 1
        self.num_sources = int(masker.num_sources)
        self.hop_length = int(codec.hop_length)
        self.frame_rate = self.sample_rate / self.hop_length
        self.causal = bool(masker.causal)
        self.latency_samples = int(getattr(codec, "latency_samples", self.hop_length))
        self.latency_ms = 1000.0 * self.latency_samples / self.sample_rate
        self.name = name

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_codec:  # frozen parts stay in eval mode (no dropout / norm statistics updates)
            self.encoder.eval()
            self.decoder.eval()
        return self

    def forward(self, mix: Tensor) -> Tensor:
        """Separate ``mix [B, 1, T]`` (or ``[B, T]``) into ``[B, S, T]``."""
        if mix.dim() == 2:
            mix = mix.unsqueeze(1)
        assert mix.dim() == 3 and mix.shape[1] == 1, f"expected mix [B, 1, T], got {list(mix.shape)}"
        length = mix.shape[-1]
        z = self.encoder(mix)
        masks = self.masker(z)
        out = self.decoder((masks * z.unsqueeze(1)).flatten(0, 1))[..., :length]
        if out.shape[-1] < length:
            out = nn.functional.pad(out, (0, length - out.shape[-1]))
        return out.reshape(mix.shape[0], self.num_sources, length)
