"""Semantic codecs: X-Codec (teacher features fed into the codec) and first-codebook distillation
(SpeechTokenizer / Mimi: the teacher is distilled into the first quantizer level only).

References:
    Ye et al., 2025, "Codec Does Matter: Exploring the Semantic Shortcoming of Codec for Audio Language
    Model" (X-Codec).
    Zhang et al., 2024, "SpeechTokenizer: Unified Speech Tokenizer for Speech Language Models"
    (distillation of HuBERT into RVQ-1).
    Défossez et al., 2024, "Moshi: a speech-text foundation model for real-time dialogue" (Mimi: split
    RVQ, a separate semantic VQ distilled from WavLM, streaming).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from sonotok.errors import SonotokError
from sonotok.models.codec import Codec
from sonotok.quantizers.base import Quantizer
from sonotok.semantic.teacher import SemanticTeacher, attach_teacher


def first_level_output(quantizer: Quantizer, z: Tensor, codes: Tensor) -> Tensor:
    """The output of the first quantizer level ``[B, D, T]`` with a straight-through gradient to ``z``.

    :class:`SplitResidualVQ` exposes it directly; for a residual quantizer it is the decoded first
    codebook, ``z + (q_1 - z).detach()`` (what the first VQ stage's straight-through passes on).
    """
    sem = getattr(quantizer, "semantic_output", None)
    if sem is not None:
        quantizer.semantic_output = None  # do not keep the graph (or block deepcopy) between steps
        return sem
    with torch.no_grad():
        q1 = quantizer.decode(codes[:, :1].clamp_min(0))
    return z + (q1 - z).detach()


# ----------------------------------------------------------------------------- first codebook
class FirstCodebookCodec(Codec):
    """A codec whose first quantizer level is trained to predict a teacher's features (SpeechTokenizer,
    Mimi). The teacher lives in the training module, not here: tokenizing needs only the codec, which
    streams exactly like :class:`~sonotok.models.codec.Codec`.

    ``forward`` adds ``semantic_pred [B, teacher_dim, F]``: a 1x1 projection of the first level's output,
    compared with the teacher's features by :class:`~sonotok.losses.semantic.SemanticDistillLoss`.

    Args:
        encoder, quantizer, decoder, sample_rate, channels, decoder_delay, quantizer_bypass_prob, name:
            as in :class:`~sonotok.models.codec.Codec`.
        teacher_dim: feature size of the teacher (384 for Whisper tiny, 768 for HuBERT base).
    """

    def __init__(self, encoder: nn.Module, quantizer: Quantizer, decoder: nn.Module, teacher_dim: int = 384,
                 sample_rate: int = 16000, channels: int = 1, decoder_delay: Optional[int] = None,
                 quantizer_bypass_prob: float = 0.0, name: str = "first_codebook"):
        super().__init__(encoder, quantizer, decoder, sample_rate, channels, decoder_delay, quantizer_bypass_prob,
                         name)
        self.teacher_dim = int(teacher_dim)
        self.semantic_proj = nn.Conv1d(quantizer.dim, self.teacher_dim, 1)

    def forward(self, wav: Tensor) -> Dict[str, object]:
        out = super().forward(wav)
        first = first_level_output(self.quantizer, out["z"], out["codes"])
        out["semantic_pred"] = self.semantic_proj(first)
        return out


# ----------------------------------------------------------------------------- X-Codec
def _conv_stack(c_in: int, c_out: int, hidden: int, layers: int, kernel: int) -> nn.Sequential:
    mods: List[nn.Module] = [nn.Conv1d(c_in, hidden, kernel, padding=kernel // 2)]
    for _ in range(max(0, layers - 1)):
        mods += [nn.ELU(), nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2)]
    mods += [nn.ELU(), nn.Conv1d(hidden, c_out, 1)]
    return nn.Sequential(*mods)


class XCodec(Codec):
    """X-Codec: the teacher's features pass a semantic encoder, are concatenated with the acoustic
    latent, projected and quantized by RVQ; after quantization the latent is split into the acoustic
    decoder (audio) and a semantic decoder that reconstructs the teacher's features (``sem/distill``).

    The teacher is needed to tokenize (its features are an input), so ``encode`` runs it; it is held by
    reference (not saved, not in ``parameters()``), and rebuilt from its config when a model directory is
    loaded. The teacher is not causal, so encoding does not stream (decoding does): ``causal`` is False,
    so the tokenizer encodes one file per batch and refuses files too long to encode whole, and export
    refuses the model (its streaming artifact would leave out the teacher).

    Args:
        encoder, quantizer, decoder, sample_rate, channels, decoder_delay, quantizer_bypass_prob, name:
            as in :class:`~sonotok.models.codec.Codec` (``quantizer.dim == encoder.dimension``).
        teacher: the frozen :class:`~sonotok.semantic.teacher.SemanticTeacher` (or ``None`` and
            :meth:`set_teacher` later).
        teacher_dim: its feature size (checked against ``teacher.dim``).
        semantic_dim: width of the semantic encoder/decoder.
        semantic_layers: convolutions in each of them.
        kernel_size: their kernel size (non-causal, like the teacher).
    """

    causal = False  # the teacher and the semantic convolutions see the whole (padded) input

    def __init__(self, encoder: nn.Module, quantizer: Quantizer, decoder: nn.Module,
                 teacher: Optional[SemanticTeacher] = None, teacher_dim: int = 384, semantic_dim: int = 64,
                 semantic_layers: int = 2, kernel_size: int = 3, sample_rate: int = 16000, channels: int = 1,
                 decoder_delay: Optional[int] = None, quantizer_bypass_prob: float = 0.0, name: str = "xcodec"):
        super().__init__(encoder, quantizer, decoder, sample_rate, channels, decoder_delay, quantizer_bypass_prob,
                         name)
        d = quantizer.dim
        self.teacher_dim = int(teacher_dim)
        self.semantic_encoder = _conv_stack(self.teacher_dim, semantic_dim, semantic_dim, semantic_layers, kernel_size)
        self.fc_pre = nn.Conv1d(d + semantic_dim, d, 1)
        self.fc_post_acoustic = nn.Conv1d(d, d, 1)
        self.fc_post_semantic = nn.Conv1d(d, semantic_dim, 1)
        self.semantic_decoder = _conv_stack(semantic_dim, self.teacher_dim, semantic_dim, semantic_layers, kernel_size)
        self.set_teacher(teacher)

    def set_teacher(self, teacher: Optional[SemanticTeacher]) -> None:
        if teacher is not None:
            if int(teacher.dim) != self.teacher_dim:
                raise ValueError(f"teacher features have {teacher.dim} dims, the codec expects teacher_dim="
                                 f"{self.teacher_dim}")
            teacher.freeze()
        attach_teacher(self, teacher)

    def teacher_features(self, wav: Tensor, num_frames: int) -> Tensor:
        teacher = self.__dict__.get("teacher")
        if teacher is None:
            raise RuntimeError("XCodec needs its semantic teacher to encode: pass teacher= or call set_teacher()")
        return teacher(wav, sample_rate=self.sample_rate, num_frames=num_frames).to(wav.dtype)

    def _latent(self, wav: Tensor) -> Tuple[Tensor, Tensor]:
        z_a = self.encoder(wav)
        target = self.teacher_features(wav, z_a.shape[-1])
        z = self.fc_pre(torch.cat([z_a, self.semantic_encoder(target)], dim=1))
        return z, target

    def forward(self, wav: Tensor) -> Dict[str, object]:
        wav = self._check_wav(wav)
        z, target = self._latent(wav)
        q = self.quantizer(z)
        z_q = q.z_q
        if self.training and self.quantizer_bypass_prob > 0 and torch.rand(()) < self.quantizer_bypass_prob:
            z_q = z
        recon = self.decoder(self.fc_post_acoustic(z_q))[..., : wav.shape[-1]]
        if recon.shape[-1] < wav.shape[-1]:
            recon = nn.functional.pad(recon, (0, wav.shape[-1] - recon.shape[-1]))
        pred = self.semantic_decoder(self.fc_post_semantic(z_q))
        return {"recon": recon, "z": z, "z_q": z_q, "codes": q.codes, "losses": q.losses, "metrics": q.metrics,
                "semantic_pred": pred, "semantic_target": target}

    @torch.no_grad()
    def encode(self, wav: Tensor, sample_rate: Optional[int] = None, num_codebooks: Optional[int] = None) -> Tensor:
        wav = self.pad_to_frames(self.prepare(wav, sample_rate))
        z, _ = self._latent(wav)
        return self.quantizer.encode(z, num_codebooks)

    @torch.no_grad()
    def decode(self, codes: Tensor, length: Optional[int] = None) -> Tensor:
        if codes.dim() == 2:
            codes = codes[None]
        wav = self.decoder(self.fc_post_acoustic(self.quantizer.decode(codes)))
        return wav[..., :length] if length is not None else wav

    @torch.no_grad()
    def decode_semantic(self, codes: Tensor) -> Tensor:
        """Codes -> reconstructed teacher features ``[B, teacher_dim, F]``."""
        return self.semantic_decoder(self.fc_post_semantic(self.quantizer.decode(codes)))

    def encode_step(self, wav: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        raise SonotokError(f"{self.name}: XCodec cannot stream its encoder (it is not causal: the semantic "
                           "teacher sees the whole input). Encode whole files with encode(), or use "
                           "first-codebook distillation (experiment=split_rvq_16k) for streaming.")

    @torch.no_grad()
    def decode_step(self, codes: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        z_q = self._stream_quantizer().decode(codes.long())
        return self.decoder.step(self.fc_post_acoustic(z_q), state)
