"""A container that runs several discriminators and concatenates their outputs.

Reference:
    The combination follows Kumar et al., "High-Fidelity Audio Compression with Improved RVQGAN" (DAC),
    NeurIPS 2023 (MPD + multi-band STFT) and Ji et al., "WavTokenizer", ICLR 2025 (MPD + MRD).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from sonotok.discriminators.common import DiscriminatorOutput, check_audio

__all__ = ["CombinedDiscriminator"]


class CombinedDiscriminator(nn.Module):
    """Runs every sub-discriminator on the same audio and concatenates logits and features.

    Args:
        discriminators: a mapping ``name -> module`` (``None`` values are skipped, so a Hydra override
            can switch one off) or a list of modules. Each module's ``forward(x [B, 1, T])`` returns
            ``(list of logits, list of lists of feature maps)``.

    ``forward(x [B, 1, T])`` returns ``(logits, features)``: the sub-discriminators' lists concatenated
    in order. :attr:`names` labels each entry (``"mpd.0"``, ``"mpd.1"``, ...), e.g. for per-discriminator
    logging; it is fixed at construction from each sub-module's ``discriminators`` list (a sub-module
    without one counts as a single entry), so ``forward`` mutates no state (compile/DDP friendly).
    """

    def __init__(self, discriminators: Mapping[str, nn.Module | None] | Sequence[nn.Module]):
        super().__init__()
        if isinstance(discriminators, Mapping):
            items = {str(k): v for k, v in discriminators.items() if v is not None}
        else:
            items = {str(i): v for i, v in enumerate(discriminators) if v is not None}
        if not items:
            raise ValueError("CombinedDiscriminator: needs at least one discriminator")
        for k, v in items.items():
            if not isinstance(v, nn.Module):
                raise TypeError(
                    f"CombinedDiscriminator: entry {k!r} is a {type(v).__name__}, not an nn.Module"
                )
        self.discriminators = nn.ModuleDict(items)
        self.names: list[str] = []
        for name, d in items.items():
            subs = getattr(d, "discriminators", None)
            n = len(subs) if isinstance(subs, (nn.ModuleList, list, tuple)) else 1
            self.names.extend(f"{name}.{i}" for i in range(n))

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        """Scores audio ``[B, 1, T]``; see the class docstring for the output structure."""
        x = check_audio(x, type(self).__name__)
        logits: list[Tensor] = []
        features: list[list[Tensor]] = []
        for name, d in self.discriminators.items():
            lg, ft = d(x)
            if len(lg) != len(ft):
                raise RuntimeError(
                    f"CombinedDiscriminator: {name!r} returned {len(lg)} logits but {len(ft)} feature lists"
                )
            logits.extend(lg)
            features.extend(ft)
        return logits, features
