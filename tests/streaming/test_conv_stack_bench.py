"""bench/conv_stack.py's plain twins compute what sonotok's stacks compute (else its ratios mean nothing)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.conv_stack import interleaved, plain_twin
from sonotok.models.imported.encodec import EncodecCodec
from sonotok.modules.conv import StreamingConv1d
from sonotok.modules.seanet import SEANetDecoder, SEANetEncoder


def _cases():
    torch.manual_seed(0)
    enc = EncodecCodec(n_filters=4, dimension=16, lstm=1, num_codebooks=2, codebook_size=16)
    return {
        "seanet_encoder": (SEANetEncoder(n_filters=4, dimension=8, strides=(2, 4)), torch.randn(1, 1, 403)),
        "seanet_decoder": (SEANetDecoder(n_filters=4, dimension=8, strides=(2, 4)), torch.randn(1, 8, 9)),
        "encodec_encoder": (enc.encoder, torch.randn(1, 1, 999)),
        "encodec_decoder": (enc.decoder, torch.randn(1, 16, 5)),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_plain_twin_equals_the_sonotok_stack(name):
    m, x = _cases()[name]
    m.eval()
    twin = plain_twin(m).eval()
    kinds = {type(t) for t in twin.modules()}
    assert nn.Conv1d in kinds and not any(t.__module__.startswith("sonotok") for t in kinds)
    assert not any(hasattr(t, "parametrizations") for t in twin.modules())  # weight norm folded
    with torch.inference_mode():
        torch.testing.assert_close(twin(x), m(x), atol=1e-5, rtol=0)


def test_plain_twin_refuses_what_it_does_not_know_and_timing_is_per_function():
    with pytest.raises(TypeError, match="no plain twin for Tanh"):
        plain_twin(nn.Tanh())
    conv = StreamingConv1d(2, 3, 3).eval()
    t = interleaved({"a": lambda: conv(torch.randn(1, 2, 50)), "b": lambda: None}, repeats=3)
    assert set(t) == {"a", "b"} and all(v >= 0 for v in t.values())
