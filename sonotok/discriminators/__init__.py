"""GAN discriminators: MPD, MSD, MS-STFT, multi-resolution, and a combined container.

Every discriminator's ``forward(x [B, 1, T])`` returns ``(logits, features)``: a list of logit tensors
(one per sub-discriminator) and a list of lists of feature maps.
"""

from sonotok.discriminators.combined import CombinedDiscriminator
from sonotok.discriminators.mpd import MultiPeriodDiscriminator, PeriodDiscriminator
from sonotok.discriminators.mrd import MultiResolutionDiscriminator, ResolutionDiscriminator
from sonotok.discriminators.msd import MultiScaleDiscriminator, ScaleDiscriminator
from sonotok.discriminators.msstft import MultiScaleSTFTDiscriminator, STFTDiscriminator

__all__ = [
    "CombinedDiscriminator",
    "MultiPeriodDiscriminator",
    "PeriodDiscriminator",
    "MultiResolutionDiscriminator",
    "ResolutionDiscriminator",
    "MultiScaleDiscriminator",
    "ScaleDiscriminator",
    "MultiScaleSTFTDiscriminator",
    "STFTDiscriminator",
]
