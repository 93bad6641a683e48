import pytest
import torch
from torch import nn

from sonotok.semantic.teacher import SemanticTeacher


class TinyTeacher(SemanticTeacher):
    """A random conv 'teacher' at 50 Hz (16 kHz input) for fast tests."""

    sample_rate = 16000
    feature_rate = 50.0

    def __init__(self, dim: int = 12, **kw):
        super().__init__(**kw)
        self.dim = dim
        self.conv = nn.Conv1d(1, dim, 320, stride=320)
        self.conv2 = nn.Conv1d(dim, dim, 3, padding=1)
        self.freeze()

    def hidden_states(self, wav):
        h1 = torch.tanh(self.conv(wav[:, None])).transpose(1, 2)
        h2 = torch.tanh(self.conv2(h1.transpose(1, 2))).transpose(1, 2)
        return [h1, h2]


@pytest.fixture
def tiny_teacher():
    return TinyTeacher()


def tiny_codec_parts(dim: int = 16):
    from sonotok.modules.seanet import SEANetDecoder, SEANetEncoder
    from sonotok.quantizers import ResidualVQ

    enc = SEANetEncoder(channels=1, dimension=dim, n_filters=4, strides=[4, 8, 10], dilations=[1])
    dec = SEANetDecoder(channels=1, dimension=dim, n_filters=4, strides=[4, 8, 10], dilations=[1])
    q = ResidualVQ(dim=dim, num_codebooks=3, codebook_size=32, kmeans_init=False)
    return enc, q, dec
