"""DAC (Descript Audio Codec, 16 / 24 / 44.1 kHz) as a sonotok codec, and its checkpoint importer.

Reference: Kumar, Seetharaman, Luebs, Kumar & Kumar, 2023, "High-Fidelity Audio Compression with
Improved RVQGAN" (DAC).

DAC is a SEANet-style encoder/decoder with Snake activations, weight-normalised convolutions that pad
on both sides (not causal), a final ``tanh``, and a residual VQ with factorized, L2-normalised codebooks
(:class:`~sonotok.quantizers.factorized.FactorizedRVQ`). The modules below nest exactly as the reference
does, so a state dict maps by renaming the weight-norm tensors only.

Because every convolution looks ahead, DAC cannot stream: :meth:`DACCodec.init_state` raises
:class:`StreamingNotSupported`, and the export writes the offline codec only. Inputs are zero-padded at
the end to whole frames, as the reference's ``preprocess`` does, so codes equal the reference's for any
length.
"""

from __future__ import annotations

import math
import re
from typing import Dict, List, Sequence, Tuple

from torch import Tensor, nn
from torch.nn.utils import parametrizations

from sonotok.errors import ModelLoadError, SonotokError
from sonotok.models.codec import Codec
from sonotok.models.imported.common import (
    as_state_dict,
    imported,
    load_mapped_state,
    read_torch_checkpoint,
    require_keys,
)
from sonotok.modules.conv import InferenceConv1d, InferenceConvTranspose1d
from sonotok.modules.streaming import Snake1d
from sonotok.quantizers.factorized import FactorizedRVQ

#: released configurations: sample rate -> (encoder rates, decoder rates, codebooks)
RELEASED = {
    16000: ([2, 4, 5, 8], [8, 5, 4, 2], 12),
    24000: ([2, 4, 5, 8], [8, 5, 4, 2], 32),
    44100: ([2, 4, 8, 8], [8, 8, 4, 2], 9),
}


class StreamingNotSupported(SonotokError, RuntimeError):
    """A model that cannot stream (non-causal convolutions)."""


def _wn_conv(*args, **kwargs) -> nn.Module:
    # InferenceConv1d: nn.Conv1d that computes its weight norm once per weight version in inference
    return parametrizations.weight_norm(InferenceConv1d(*args, **kwargs))


def _wn_convtr(*args, **kwargs) -> nn.Module:
    return parametrizations.weight_norm(InferenceConvTranspose1d(*args, **kwargs))


class DACResidualUnit(nn.Module):
    """Snake -> conv(7, dilation) -> Snake -> conv(1), plus the input (same length, centred padding)."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(dim),
            _wn_conv(dim, dim, kernel_size=7, dilation=dilation, padding=3 * dilation),
            Snake1d(dim),
            _wn_conv(dim, dim, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)
        crop = (x.shape[-1] - y.shape[-1]) // 2
        if crop > 0:
            x = x[..., crop : x.shape[-1] - crop]
        return x + y


class DACEncoderBlock(nn.Module):
    """Three residual units (dilations 1, 3, 9), Snake, strided conv doubling the channels."""

    def __init__(self, dim: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(
            DACResidualUnit(dim // 2, 1),
            DACResidualUnit(dim // 2, 3),
            DACResidualUnit(dim // 2, 9),
            Snake1d(dim // 2),
            _wn_conv(dim // 2, dim, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class DACDecoderBlock(nn.Module):
    """Snake, transposed conv (upsampling by ``stride``), three residual units."""

    def __init__(self, input_dim: int, output_dim: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(input_dim),
            _wn_convtr(input_dim, output_dim, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)),
            DACResidualUnit(output_dim, 1),
            DACResidualUnit(output_dim, 3),
            DACResidualUnit(output_dim, 9),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class DACEncoder(nn.Module):
    """``wav [B, 1, T] -> latent [B, latent_dim, T / hop]`` (``T`` a multiple of the hop)."""

    def __init__(self, d_model: int = 64, strides: Sequence[int] = (2, 4, 8, 8), latent_dim: int = 1024):
        super().__init__()
        layers: List[nn.Module] = [_wn_conv(1, d_model, kernel_size=7, padding=3)]
        for stride in strides:
            d_model *= 2
            layers.append(DACEncoderBlock(d_model, stride))
        layers += [Snake1d(d_model), _wn_conv(d_model, latent_dim, kernel_size=3, padding=1)]
        self.block = nn.Sequential(*layers)
        self.hop_length = int(math.prod(strides))
        self.dimension = int(latent_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class DACDecoder(nn.Module):
    """``latent [B, latent_dim, F] -> wav [B, 1, F * hop]`` in ``[-1, 1]`` (final tanh)."""

    def __init__(self, latent_dim: int = 1024, channels: int = 1536, rates: Sequence[int] = (8, 8, 4, 2)):
        super().__init__()
        layers: List[nn.Module] = [_wn_conv(latent_dim, channels, kernel_size=7, padding=3)]
        output_dim = channels
        for i, stride in enumerate(rates):
            input_dim, output_dim = channels // 2**i, channels // 2 ** (i + 1)
            layers.append(DACDecoderBlock(input_dim, output_dim, stride))
        layers += [Snake1d(output_dim), _wn_conv(output_dim, 1, kernel_size=7, padding=3), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.hop_length = int(math.prod(rates))

    def forward(self, z: Tensor) -> Tensor:
        return self.model(z)


class DACCodec(Codec):
    """DAC as a sonotok :class:`Codec` (offline only: it is not causal).

    Args:
        sample_rate: 16000, 24000 or 44100 for the released models.
        encoder_dim: width of the first encoder convolution.
        encoder_rates: downsampling factors.
        latent_dim: latent dimension (default ``encoder_dim * 2 ** len(encoder_rates)``).
        decoder_dim: width of the first decoder convolution.
        decoder_rates: upsampling factors.
        num_codebooks: levels kept.
        codebook_size: codes per level.
        codebook_dim: lookup dimension of the factorized codes.
        name: model name for code files.
    """

    causal = False
    streamable = False

    def __init__(self, sample_rate: int = 44100, encoder_dim: int = 64, encoder_rates: Sequence[int] = (2, 4, 8, 8),
                 latent_dim: int | None = None, decoder_dim: int = 1536, decoder_rates: Sequence[int] = (8, 8, 4, 2),
                 num_codebooks: int = 9, codebook_size: int = 1024, codebook_dim: int = 8, name: str = "dac_44khz"):
        latent = int(latent_dim or encoder_dim * 2 ** len(encoder_rates))
        super().__init__(
            encoder=DACEncoder(encoder_dim, list(encoder_rates), latent),
            quantizer=FactorizedRVQ(latent, num_codebooks, codebook_size, codebook_dim),
            decoder=DACDecoder(latent, decoder_dim, list(decoder_rates)),
            sample_rate=sample_rate,
            channels=1,
            name=name,
        )

    def init_state(self, batch: int = 1) -> Tuple[List[Tensor], List[Tensor]]:
        raise StreamingNotSupported(
            f"{self.name} cannot stream: DAC's convolutions are not causal (each output looks ahead). "
            "Encode and decode whole files instead (sonotok tokenize / decode, or the offline codec.pt export)."
        )


# ------------------------------------------------------------------------------------------ import
def rename_key(key: str) -> str:
    """DAC key -> sonotok key: only old-style weight norm (``weight_g``/``weight_v``) is renamed."""
    key = re.sub(r"\.weight_g$", ".parametrizations.weight.original0", key)
    return re.sub(r"\.weight_v$", ".parametrizations.weight.original1", key)


def read_dac(path, sample_rate: int, num_codebooks: int | None = None, name: str | None = None):
    """Read DAC's ``.pth`` (``{"state_dict", "metadata": {"kwargs"}}``) into a :class:`DACCodec` (:class:`Imported`).

    Args:
        path: the checkpoint (e.g. ``weights_44khz_8kbps_0.0.1.pth``).
        sample_rate: the family's rate (16000, 24000, 44100); the file's metadata must agree.
        num_codebooks: levels to keep (default all: the released bitrate).
        name: model name (default ``dac_<rate>khz``).
    """
    name = name or f"dac_{round(sample_rate / 1000)}khz"
    ckpt = read_torch_checkpoint(path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "metadata" not in ckpt:
        keys = sorted(ckpt)[:6] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ModelLoadError(f"{path}: not a DAC checkpoint (expected keys 'state_dict' and 'metadata', got {keys})")
    state = as_state_dict(path, ckpt["state_dict"], "a DAC state dict")
    kwargs = dict((ckpt.get("metadata") or {}).get("kwargs") or {})
    require_keys(path, state, ["encoder.block.0.weight_v", "quantizer.quantizers.0.codebook.weight"], "DAC")
    sr = int(kwargs.get("sample_rate", sample_rate))
    if sr != int(sample_rate):
        raise ModelLoadError(f"{path}: this DAC checkpoint is for {sr} Hz (metadata kwargs), not {sample_rate} Hz: "
                             f"import it as dac_{round(sr / 1000)}khz")
    levels = len([k for k in state if re.match(r"^quantizer\.quantizers\.\d+\.codebook\.weight$", k)])
    k = levels if num_codebooks is None else int(num_codebooks)
    if not 1 <= k <= levels:
        raise ModelLoadError(f"{path}: num_codebooks must be in [1, {levels}], got {k}")
    cb = state["quantizer.quantizers.0.codebook.weight"]
    config = {
        "_target_": f"{DACCodec.__module__}.DACCodec",
        "sample_rate": sr,
        "encoder_dim": int(kwargs.get("encoder_dim", 64)),
        "encoder_rates": [int(r) for r in kwargs.get("encoder_rates", RELEASED.get(sr, RELEASED[44100])[0])],
        "latent_dim": int(kwargs["latent_dim"]) if kwargs.get("latent_dim") else None,
        "decoder_dim": int(kwargs.get("decoder_dim", 1536)),
        "decoder_rates": [int(r) for r in kwargs.get("decoder_rates", RELEASED.get(sr, RELEASED[44100])[1])],
        "num_codebooks": k,
        "codebook_size": int(cb.shape[0]),
        "codebook_dim": int(cb.shape[1]),
        "name": name,
    }
    model = DACCodec(**{key: v for key, v in config.items() if key != "_target_"})
    dropped = re.compile(r"^quantizer\.quantizers\.(\d+)\.")

    def ignored(key: str) -> bool:
        m = dropped.match(key)
        return m is not None and int(m[1]) >= k

    def rename(key: str) -> str | None:
        return None if ignored(key) else rename_key(key)

    load_mapped_state(path, model, state, rename, ignored=ignored)
    return imported(model, config, path, "dac", {"checkpoint_levels": levels,
                                                             "dac_metadata_kwargs": _plain(kwargs)})


def _plain(d: Dict) -> Dict:
    return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else [x for x in v] if isinstance(v, (list, tuple)) else str(v))
            for k, v in d.items()}
