"""Lightning modules, the training entry point and training callbacks/plots."""

from sonotok.training.codec_module import CodecLightningModule

__all__ = ["CodecLightningModule"]
