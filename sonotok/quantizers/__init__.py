"""Quantizers behind one protocol (see :mod:`sonotok.quantizers.base`)."""

from sonotok.quantizers.base import Quantizer, QuantizerOutput
from sonotok.quantizers.frozen import FrozenFSQ, FrozenVQ
from sonotok.quantizers.fsq import FSQ
from sonotok.quantizers.rvq import GroupedResidualVQ, ResidualVQ
from sonotok.quantizers.simvq import ResidualSimVQ
from sonotok.quantizers.split import FrozenSplitVQ, SplitResidualVQ

__all__ = [
    "Quantizer", "QuantizerOutput", "FrozenVQ", "FrozenFSQ", "ResidualVQ", "GroupedResidualVQ",
    "ResidualSimVQ", "FSQ", "SplitResidualVQ", "FrozenSplitVQ",
]
