"""Codec training with semantic distillation: :class:`CodecLightningModule` plus the ``sem/*`` losses.

One speech teacher (X-Codec, first-codebook): the codec's ``forward`` returns ``semantic_pred [B, D, F]``
(and, for X-Codec, ``semantic_target``); the loss is ``sem/distill``.

DM-Codec: the codec returns ``semantic_preds = {"lm": ..., "sm": ...}``; the ``lm`` head is compared with the
text teacher's token embeddings of the batch's transcripts aligned to the frames (``sem/lm``), the ``sm`` head
with the speech teacher's features (``sem/sm``). Transcripts come with the batch (dict batches of
:class:`~sonotok.semantic.transcripts.TranscribedAudioDataModule`: ``text``, ``offset``, ``duration`` and,
force-aligned, ``word_spans``); a batch without them is transcribed by the text teacher's ASR (slow: meant
for tests and whole files).

A forward hook on the codec computes the teachers' targets, applies the losses and adds their entries to
``out["losses"]``, so the base module's training step weights them with ``loss.weights[...]`` like every
other loss. Validation logs them too. Teachers are held by reference
(:func:`~sonotok.semantic.teacher.attach_teacher`): frozen, in eval mode, absent from ``state_dict``
(checkpoints), from the optimizer and from the model directory.
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, Optional

import torch
from torch import Tensor, nn

from sonotok.semantic.teacher import SemanticTeacher, attach_teacher
from sonotok.training.codec_module import CodecLightningModule


class SemanticCodecLightningModule(CodecLightningModule):
    """Args: those of :class:`CodecLightningModule`, plus

    Args:
        teacher: the frozen speech teacher (first-codebook distillation, DM-Codec's SM guidance); ``None`` takes
            the codec's own (X-Codec carries one because it needs it to tokenize).
        semantic_loss: module ``(pred, target) -> {"sem/distill": ...}``
            (:class:`~sonotok.losses.semantic.SemanticDistillLoss`).
        text_teacher: the frozen text teacher for LM guidance (:class:`~sonotok.semantic.text_teacher.TextTeacher`).
        multimodal_loss: DM-Codec's loss (:class:`~sonotok.losses.semantic.MultimodalDistillLoss`:
            ``sem/lm`` and ``sem/sm``); default d-axis for both.
    """

    def __init__(self, *args: Any, teacher: Optional[SemanticTeacher] = None,
                 semantic_loss: Optional[nn.Module] = None, text_teacher: Optional[SemanticTeacher] = None,
                 multimodal_loss: Optional[nn.Module] = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        from sonotok.losses.semantic import MultimodalDistillLoss, SemanticDistillLoss

        self.semantic_loss = semantic_loss if semantic_loss is not None else SemanticDistillLoss("cosine")
        self.multimodal_loss = multimodal_loss if multimodal_loss is not None else MultimodalDistillLoss()
        teacher = teacher if teacher is not None else self.codec.__dict__.get("teacher")
        for t in (teacher, text_teacher):
            if t is not None:
                t.freeze()
        attach_teacher(self, teacher)
        attach_teacher(self, text_teacher, "text_teacher")
        self._last_semantic: Dict[str, Tensor] = {}
        self._batch: Any = None
        self._warned_asr = False
        self.codec.register_forward_hook(self._add_semantic_loss, with_kwargs=False)

    @property
    def teacher_module(self) -> Optional[SemanticTeacher]:
        return self.__dict__.get("teacher")

    @property
    def text_teacher_module(self) -> Optional[SemanticTeacher]:
        return self.__dict__.get("text_teacher")

    def use_batch(self, batch: Any) -> None:
        """The batch whose transcripts the next codec forward uses (set by the training and validation steps;
        plain training loops call it before ``codec(wav)``)."""
        self._batch = batch

    # ----------------------------------------------------------------- targets
    def _text_target(self, codec: nn.Module, wav: Tensor, num_frames: int) -> tuple[Tensor, Optional[Tensor]]:
        teacher = self.text_teacher_module
        if teacher is None:
            raise RuntimeError("LM-guided distillation needs a text teacher (module text_teacher=)")
        frame_rate = float(codec.frame_rate)
        b = self._batch
        if isinstance(b, dict) and b.get("text") is not None:
            texts = list(b["text"])
            if len(texts) != wav.shape[0]:
                raise ValueError(f"batch has {len(texts)} texts for {wav.shape[0]} audio items")
            offsets = b.get("offset")
            durations = b.get("duration")
            feats, mask = teacher.aligned(num_frames, frame_rate, texts,
                                          None if offsets is None else [float(x) for x in offsets],
                                          None if durations is None else [float(x) for x in durations],
                                          word_spans=b.get("word_spans"))
            return feats.to(wav.device), mask.to(wav.device)
        if not self._warned_asr:
            warnings.warn("batch without transcripts: the text teacher transcribes each item with its ASR (slow); "
                          "train DM-Codec on sonotok.semantic.transcripts.TranscribedAudioDataModule", stacklevel=2)
            self._warned_asr = True
        texts = teacher.transcribe(wav, codec.sample_rate)
        feats, mask = teacher.aligned(num_frames, frame_rate, texts)
        return feats.to(wav.device), mask.to(wav.device)

    def _speech_target(self, codec: nn.Module, wav: Tensor, num_frames: int) -> Tensor:
        teacher = self.teacher_module
        if teacher is None:
            raise RuntimeError("semantic distillation needs a teacher (module teacher= or codec.teacher)")
        return teacher(wav, sample_rate=codec.sample_rate, num_frames=num_frames)

    def _add_semantic_loss(self, codec: nn.Module, inputs: tuple, out: Dict[str, Any]) -> Dict[str, Any]:
        if not isinstance(out, dict):
            return out
        pred, preds = out.get("semantic_pred"), out.get("semantic_preds")
        if pred is None and not preds:
            return out
        wav = inputs[0]
        losses: Dict[str, Tensor] = dict(out["losses"])
        if pred is not None:
            target = out.get("semantic_target")
            if target is None:
                target = self._speech_target(codec, wav, pred.shape[-1])
            losses.update(self.semantic_loss(pred, target.to(pred.dtype)))
        if preds:
            targets: Dict[str, Tensor] = {}
            masks: Dict[str, Optional[Tensor]] = {}
            if "lm" in preds:
                targets["lm"], masks["lm"] = self._text_target(codec, wav, preds["lm"].shape[-1])
            if "sm" in preds:
                targets["sm"] = self._speech_target(codec, wav, preds["sm"].shape[-1])
            losses.update(self.multimodal_loss(preds, {k: v.to(preds[k].dtype) for k, v in targets.items()}, masks))
        self._last_semantic = {k: v.detach() for k, v in losses.items() if k.startswith("sem/")}
        out["losses"] = losses
        return out

    # ----------------------------------------------------------------- steps
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        self.use_batch(batch)
        try:
            return super().training_step(batch, batch_idx)
        finally:
            self._batch = None

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._last_semantic = {}
        self.use_batch(batch)
        try:
            super().validation_step(batch, batch_idx)
        finally:
            self._batch = None
        n = self._batch_audio(batch).shape[0]
        for k, v in self._last_semantic.items():
            self.log(f"val/{k}", v, on_epoch=True, sync_dist=True, batch_size=n)

    @torch.no_grad()
    def on_fit_start(self) -> None:
        super().on_fit_start()
        dm = getattr(getattr(self, "trainer", None), "datamodule", None)
        ds = getattr(dm, "train_dataset", None)
        frac = getattr(ds, "text_fraction", None)
        if frac is not None and self.text_teacher_module is not None:
            aligned = getattr(ds, "aligned_fraction", 0.0)
            print(f"LM-guided distillation: {100 * frac:.1f}% of the training audio has a transcript, "
                  f"{100 * aligned:.1f}% force-aligned")
