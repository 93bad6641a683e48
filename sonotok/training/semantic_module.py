"""Codec training with semantic distillation: :class:`CodecLightningModule` plus ``sem/distill``.

The codec's ``forward`` returns ``semantic_pred [B, D, F]`` (and, for X-Codec, ``semantic_target``);
a forward hook on the codec computes the teacher's features when the codec did not, applies the
semantic loss and adds its ``sem/distill`` entry to ``out["losses"]``, so the base module's training step
weights it with ``loss.weights["sem/distill"]`` like every other loss. Validation logs it too.

The teacher is held by reference (:func:`~sonotok.semantic.teacher.attach_teacher`): it is frozen, in
eval mode, absent from ``state_dict`` (checkpoints), from the optimizer and from the model directory.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from torch import Tensor, nn

from sonotok.semantic.teacher import SemanticTeacher, attach_teacher
from sonotok.training.codec_module import CodecLightningModule


class SemanticCodecLightningModule(CodecLightningModule):
    """Args: those of :class:`CodecLightningModule`, plus

    Args:
        teacher: the frozen teacher for first-codebook distillation; ``None`` takes the codec's own
            (X-Codec carries one because it needs it to tokenize).
        semantic_loss: module ``(pred, target) -> {"sem/distill": ...}``
            (:class:`~sonotok.losses.semantic.SemanticDistillLoss`).
    """

    def __init__(self, *args: Any, teacher: Optional[SemanticTeacher] = None,
                 semantic_loss: Optional[nn.Module] = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if semantic_loss is None:
            from sonotok.losses.semantic import SemanticDistillLoss

            semantic_loss = SemanticDistillLoss("cosine")
        self.semantic_loss = semantic_loss
        teacher = teacher if teacher is not None else self.codec.__dict__.get("teacher")
        if teacher is not None:
            teacher.freeze()
        attach_teacher(self, teacher)
        self._last_semantic: Optional[Tensor] = None
        self.codec.register_forward_hook(self._add_semantic_loss, with_kwargs=False)

    @property
    def teacher_module(self) -> Optional[SemanticTeacher]:
        return self.__dict__.get("teacher")

    def _add_semantic_loss(self, codec: nn.Module, inputs: tuple, out: Dict[str, Any]) -> Dict[str, Any]:
        pred = out.get("semantic_pred") if isinstance(out, dict) else None
        if pred is None:
            return out
        target = out.get("semantic_target")
        if target is None:
            teacher = self.teacher_module
            if teacher is None:
                raise RuntimeError("semantic distillation needs a teacher (module teacher= or codec.teacher)")
            wav = inputs[0]
            target = teacher(wav, sample_rate=codec.sample_rate, num_frames=pred.shape[-1])
        losses: Dict[str, Tensor] = dict(out["losses"])
        sem = self.semantic_loss(pred, target.to(pred.dtype))
        self._last_semantic = sem["sem/distill"].detach()
        losses.update(sem)
        out["losses"] = losses
        return out

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._last_semantic = None
        super().validation_step(batch, batch_idx)
        if self._last_semantic is not None:
            self.log("val/sem/distill", self._last_semantic, on_epoch=True, sync_dist=True,
                     batch_size=self._batch_audio(batch).shape[0])
