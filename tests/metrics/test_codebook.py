import math

import pytest
import torch

from sonotok.metrics import CodebookUsage


def test_uniform_and_single_code():
    usage = CodebookUsage(num_codebooks=2, codebook_size=16)
    codes = torch.stack([torch.arange(64) % 16, torch.full((64,), 3)]).unsqueeze(0)  # [1, 2, 64]
    usage.update(codes[:, :, :32])
    usage.update(codes[:, :, 32:])
    stats = usage.compute()
    assert torch.allclose(stats["perplexity"], torch.tensor([16.0, 1.0]))
    assert torch.allclose(stats["utilization"], torch.tensor([1.0, 1 / 16]))
    assert torch.allclose(stats["entropy_bits"], torch.tensor([4.0, 0.0]))
    assert stats["count"].tolist() == [64, 64]
    assert usage.entropy_bitrate(frame_rate=50.0) == pytest.approx(200.0)


def test_half_used_and_reset():
    usage = CodebookUsage(num_codebooks=1, codebook_size=8)
    usage.update(torch.tensor([[[0, 1, 2, 3, 0, 1, 2, 3]]]))
    stats = usage.compute()
    assert stats["utilization"].item() == 0.5
    assert stats["perplexity"].item() == pytest.approx(4.0)
    assert stats["entropy_bits"].item() == pytest.approx(math.log2(4))
    usage.reset()
    assert usage.counts.sum() == 0


def test_bad_codes_rejected():
    usage = CodebookUsage(num_codebooks=2, codebook_size=4)
    with pytest.raises(ValueError, match=r"\[B, K=2, T\]"):
        usage.update(torch.zeros(1, 3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="range"):
        usage.update(torch.full((1, 2, 5), 4))
