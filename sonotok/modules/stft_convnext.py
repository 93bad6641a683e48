"""Spectral codec encoder and decoder: causal STFT + ConvNeXt encoder, ConvNeXt + inverse-STFT decoder.

The encoder does not learn a filterbank from scratch (the slow part of a waveform SEANet on a small
budget): a fixed causal STFT gives frames at ``sample_rate / stft_hop`` Hz, ConvNeXt-1D blocks mix them,
and a strided causal convolution brings the sequence to the code frame rate. The decoder mirrors it
and ends in :class:`~sonotok.modules.stft.ISTFTHead`, which predicts magnitude and phase per bin and
overlap-adds (Vocos / WavTokenizer style).

Both follow the streaming protocol (``num_states``, ``init_state``, ``step``); the encoder's stream
equals its offline output, the decoder's stream equals its offline output delayed by ``delay``
samples (the overlap of the synthesis window; ``Codec`` derives ``decoder_delay`` from it) and ``flush``
returns the offline output's last ``delay`` samples.

References:
    Siuzdak, 2023, "Vocos: Closing the gap between time-domain and Fourier-based neural vocoders".
    Ji et al., 2024, "WavTokenizer: an Efficient Acoustic Discrete Codec Tokenizer".
    Liu et al., 2022, "A ConvNet for the 2020s".
"""


from typing import List, Tuple

from torch import Tensor, nn

from sonotok.modules.convnext import ChannelLayerNorm, ConvNeXtStack, Pointwise
from sonotok.modules.stft import CausalSTFT, ISTFTHead
from sonotok.modules.streaming import Conv, ConvTranspose, Stateless, StreamingSequential


class STFTConvNeXtEncoder(nn.Module):
    """``wav [B, 1, T] -> latent [B, dimension, ceil(T / hop_length)]``.

    Args:
        channels: audio channels (must be 1).
        dimension: latent channels (the quantizer's ``dim``).
        width: ConvNeXt channels.
        n_fft: STFT size.
        stft_hop: STFT hop in samples.
        stride: downsampling from the STFT frame rate to the code frame rate.
        num_blocks: ConvNeXt blocks at the STFT frame rate.
        num_post_blocks: ConvNeXt blocks at the code frame rate.
        kernel_size: depthwise kernel size.
        mlp_ratio: ConvNeXt MLP expansion.
        features: STFT features (see :class:`~sonotok.modules.stft.CausalSTFT`).
    """

    num_states: int

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 64,
        width: int = 256,
        n_fft: int = 640,
        stft_hop: int = 160,
        stride: int = 2,
        num_blocks: int = 4,
        num_post_blocks: int = 2,
        kernel_size: int = 7,
        mlp_ratio: float = 3.0,
        features: str = "logmag_complex",
    ):
        super().__init__()
        if channels != 1:
            raise ValueError(f"STFTConvNeXtEncoder is mono: channels must be 1, got {channels}")
        self.dimension = int(dimension)
        self.hop_length = int(stft_hop * stride)
        stft = CausalSTFT(n_fft, stft_hop, features=features)
        layers: List[nn.Module] = [
            stft,
            Stateless(Pointwise(stft.out_channels, width)),
            Stateless(ChannelLayerNorm(width)),
        ]
        if num_blocks:
            layers.append(ConvNeXtStack(width, num_blocks, kernel_size, mlp_ratio))
        if stride > 1:
            layers.append(Conv(width, width, 2 * stride, stride=stride, norm="none"))
        if num_post_blocks:
            layers.append(ConvNeXtStack(width, num_post_blocks, kernel_size, mlp_ratio))
        layers += [Stateless(ChannelLayerNorm(width)), Stateless(Pointwise(width, dimension))]
        self.model = StreamingSequential(*layers)
        self.num_states = self.model.num_states

    def forward(self, x: Tensor) -> Tensor:
        assert x.dim() == 3 and x.shape[1] == 1, f"encoder expects [B, 1, T], got {list(x.shape)}"
        return self.model(x)

    def init_state(self, batch: int) -> List[Tensor]:
        return self.model.init_state(batch)

    def step(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        return self.model.step(x, state)


class StreamingLatentDecoder(nn.Module):
    """Base of the decoders whose layers form one ``StreamingSequential``: ``latent [B, dimension, F] -> wav``.

    Subclasses set ``dimension`` (latent channels), ``model`` (the
    :class:`~sonotok.modules.streaming.StreamingSequential`, ending in an
    :class:`~sonotok.modules.stft.ISTFTHead`), ``num_states`` and ``delay`` (samples the stream lags the
    offline output; ``Codec.decoder_delay`` is derived from it).
    """

    def forward(self, z: Tensor) -> Tensor:
        assert z.dim() == 3 and z.shape[1] == self.dimension, (
            f"decoder expects [B, {self.dimension}, F], got {list(z.shape)}"
        )
        return self.model(z)

    def init_state(self, batch: int) -> List[Tensor]:
        return self.model.init_state(batch)

    def step(self, z: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Stream latent frames; output lags :meth:`forward` by ``delay`` samples."""
        return self.model.step(z, state)

    def flush(self, state: List[Tensor]) -> Tensor:
        """The last ``delay`` samples of a stream, ``[B, 1, delay]`` (the head's overlap tail; the layers
        before it are causal and hold nothing back). ``state`` is not changed."""
        head = self.model.layers[-1]
        return head.flush(state[len(state) - head.num_states :])


class VocosDecoder(StreamingLatentDecoder):
    """``latent [B, dimension, F] -> wav [B, 1, F * hop_length]`` through ConvNeXt and an inverse STFT.

    Args:
        channels: audio channels (must be 1).
        dimension: latent channels.
        width: ConvNeXt channels.
        n_fft: synthesis FFT size.
        stft_hop: synthesis hop in samples.
        stride: upsampling from the code frame rate to the synthesis frame rate.
        num_pre_blocks: ConvNeXt blocks at the code frame rate.
        num_blocks: ConvNeXt blocks at the synthesis frame rate.
        kernel_size: depthwise kernel size.
        mlp_ratio: ConvNeXt MLP expansion.
        window: synthesis window.
    """

    num_states: int

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 64,
        width: int = 256,
        n_fft: int = 640,
        stft_hop: int = 160,
        stride: int = 2,
        num_pre_blocks: int = 2,
        num_blocks: int = 4,
        kernel_size: int = 7,
        mlp_ratio: float = 3.0,
        window: str = "hann",
    ):
        super().__init__()
        if channels != 1:
            raise ValueError(f"VocosDecoder is mono: channels must be 1, got {channels}")
        self.dimension = int(dimension)
        self.hop_length = int(stft_hop * stride)
        head = ISTFTHead(width, n_fft, stft_hop, window)
        self.delay = head.delay
        layers: List[nn.Module] = [Stateless(Pointwise(dimension, width)), Stateless(ChannelLayerNorm(width))]
        if num_pre_blocks:
            layers.append(ConvNeXtStack(width, num_pre_blocks, kernel_size, mlp_ratio))
        if stride > 1:
            layers.append(ConvTranspose(width, width, stride, stride=stride, norm="none"))
        if num_blocks:
            layers.append(ConvNeXtStack(width, num_blocks, kernel_size, mlp_ratio))
        layers += [Stateless(ChannelLayerNorm(width)), head]
        self.model = StreamingSequential(*layers)
        self.num_states = self.model.num_states
