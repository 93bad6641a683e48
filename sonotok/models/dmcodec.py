"""DM-Codec: a codec whose RVQ is distilled from both a language model (LM-guided: contextual token embeddings
of the transcript, aligned to the frames) and a speech model (SM-guided: a speech encoder's frame features).

Reference:
    Ahasan et al., 2024, "DM-Codec: Distilling Multimodal Representations for Speech Tokenization".
    Zhang et al., 2024, "SpeechTokenizer" (the SM-guided part: distillation into RVQ-1).
"""

from __future__ import annotations

from typing import Dict, Optional

from torch import Tensor, nn

from sonotok.models.codec import Codec
from sonotok.models.semantic import first_level_output
from sonotok.quantizers.base import Quantizer

LEVELS = ("first", "all")


class DMCodec(Codec):
    """A codec with two distillation heads on its quantized latent, trained against a text teacher (``lm``) and
    a speech teacher (``sm``). The teachers live in the training module, never here: the codec encodes,
    decodes, streams and exports exactly like :class:`~sonotok.models.codec.Codec` (the two 1x1 heads are
    training-only and unused by ``encode``/``decode``/the streaming steps).

    ``forward`` adds ``semantic_preds``: ``{"lm": [B, lm_dim, F], "sm": [B, sm_dim, F]}`` (only the enabled
    heads), 1x1 projections of the chosen level of the quantizer: ``"first"`` = the first RVQ level's output
    (straight-through to the encoder, as SpeechTokenizer), ``"all"`` = the whole quantized latent ``z_q``
    (the sum of all levels).

    Args:
        encoder, quantizer, decoder, sample_rate, channels, decoder_delay, quantizer_bypass_prob, name:
            as in :class:`~sonotok.models.codec.Codec`.
        lm_dim: feature size of the text teacher (384 for all-MiniLM-L6-v2); ``0`` disables LM guidance.
        sm_dim: feature size of the speech teacher (384 for Whisper tiny.en); ``0`` disables SM guidance.
        lm_level, sm_level: ``"first"`` or ``"all"`` (which quantizer output each teacher is distilled into).
    """

    def __init__(self, encoder: nn.Module, quantizer: Quantizer, decoder: nn.Module, lm_dim: int = 384,
                 sm_dim: int = 384, lm_level: str = "all", sm_level: str = "first", sample_rate: int = 16000,
                 channels: int = 1, decoder_delay: Optional[int] = None, quantizer_bypass_prob: float = 0.0,
                 name: str = "dmcodec"):
        super().__init__(encoder, quantizer, decoder, sample_rate, channels, decoder_delay, quantizer_bypass_prob,
                         name)
        for k, v in (("lm_level", lm_level), ("sm_level", sm_level)):
            if v not in LEVELS:
                raise ValueError(f"{k} must be one of {LEVELS}, got {v!r}")
        if not lm_dim and not sm_dim:
            raise ValueError("DMCodec needs lm_dim > 0 or sm_dim > 0 (one teacher at least)")
        self.lm_dim, self.sm_dim = int(lm_dim), int(sm_dim)
        self.lm_level, self.sm_level = lm_level, sm_level
        self.lm_proj = nn.Conv1d(quantizer.dim, self.lm_dim, 1) if self.lm_dim else None
        self.sm_proj = nn.Conv1d(quantizer.dim, self.sm_dim, 1) if self.sm_dim else None

    def forward(self, wav: Tensor) -> Dict[str, object]:
        out = super().forward(wav)
        first: Optional[Tensor] = None
        if "first" in ((self.lm_level if self.lm_dim else None), (self.sm_level if self.sm_dim else None)):
            first = first_level_output(self.quantizer, out["z"], out["codes"])
        elif getattr(self.quantizer, "semantic_output", None) is not None:
            self.quantizer.semantic_output = None  # a split RVQ's first level: not needed, do not keep its graph
        levels = {"first": first, "all": out["z_q"]}
        preds: Dict[str, Tensor] = {}
        if self.lm_proj is not None:
            preds["lm"] = self.lm_proj(levels[self.lm_level])
        if self.sm_proj is not None:
            preds["sm"] = self.sm_proj(levels[self.sm_level])
        out["semantic_preds"] = preds
        return out
