"""Evaluation metrics: PESQ, STOI, SI-SDR, mel distance, codebook usage, bitrate."""

from sonotok.metrics.bitrate import bitrate, codec_bitrate, tokens_per_second
from sonotok.metrics.codebook import CodebookUsage
from sonotok.metrics.quality import log_mel, mel_distance, pesq_wb, si_sdr, stoi

__all__ = [
    "CodebookUsage",
    "bitrate",
    "codec_bitrate",
    "log_mel",
    "mel_distance",
    "pesq_wb",
    "si_sdr",
    "stoi",
    "tokens_per_second",
]
