"""Lightning modules (one base, :class:`~sonotok.training.base.TrainingModule`), the training entry point and
training callbacks/plots."""

from sonotok.training.base import TrainingModule
from sonotok.training.codec_module import CodecLightningModule

__all__ = ["CodecLightningModule", "TrainingModule"]
