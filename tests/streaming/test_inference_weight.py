"""The inference fast path of the weight-normalised convolutions equals the training path.

Without autograd (``torch.no_grad`` / ``torch.inference_mode``) the SEANet-family convolutions compute their
weight norm once per weight version (``sonotok.modules.conv.inference_weight``) instead of on every call;
the outputs must be bitwise those of the grad-enabled (training) path, the cache must follow every change
of the weights, and training must still reach the weight-norm tensors.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from sonotok.models.imported.dac import DACCodec
from sonotok.models.imported.encodec import EncodecCodec
from sonotok.modules.conv import StreamingConvTranspose1d, fold_weight_norm
from sonotok.modules.seanet import SEANetDecoder, SEANetEncoder


def _perturbed(m: torch.nn.Module) -> torch.nn.Module:
    """Random gains (a trained model's weight-norm g differ from |v|), eval mode."""
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(1 + 0.1 * torch.randn_like(p))
    return m.eval()


def _models():
    torch.manual_seed(0)
    # lstm=0: PyTorch's LSTM kernel itself differs in the last bit with and without autograd
    enc = EncodecCodec(n_filters=4, dimension=16, lstm=0, num_codebooks=2, codebook_size=16)
    dac = DACCodec(encoder_dim=4, encoder_rates=(2, 4), decoder_dim=16, decoder_rates=(4, 2), num_codebooks=2,
                   codebook_size=16)
    return {
        "seanet_encoder": (SEANetEncoder(n_filters=8, dimension=16), torch.randn(2, 1, 1000)),
        "seanet_decoder": (SEANetDecoder(n_filters=8, dimension=16), torch.randn(2, 16, 7)),
        "encodec_encoder": (enc.encoder, torch.randn(1, 1, 999)),
        "encodec_decoder": (enc.decoder, torch.randn(1, 16, 5)),
        "dac_encoder": (dac.encoder, torch.randn(1, 1, 800)),
        "dac_decoder": (dac.decoder, torch.randn(1, 16, 5)),
    }


def _weight_norm_calls(m: torch.nn.Module) -> list:
    """A list that grows by one each time any weight-norm parametrization of ``m`` is evaluated."""
    calls: list = []
    for mod in m.modules():
        if type(mod).__name__ == "_WeightNorm":
            mod.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize("name", list(_models()))
def test_inference_path_equals_training_path_bitwise(name):
    m, x = _models()[name]
    m = _perturbed(m)
    calls = _weight_norm_calls(m)
    expected = m(x)  # autograd on: weight norm evaluated on every call, as in training
    assert len(calls) > 0
    with torch.inference_mode():
        first = m(x)
        n = len(calls)
        second = m(x)
        assert len(calls) == n, "weight norm recomputed although the weights did not change"
    with torch.no_grad():
        third = m(x)
    assert torch.equal(first, expected.detach()) and torch.equal(second, first) and torch.equal(third, first)
    # the folded copy (export) and its TorchScript give the same values
    folded = fold_weight_norm(copy.deepcopy(m))
    with torch.no_grad():
        assert torch.equal(folded(x), first)
        assert torch.equal(torch.jit.script(folded)(x), first)


def test_cache_follows_optimizer_steps_state_dicts_and_dtype():
    m, x = _models()["seanet_encoder"]
    m = _perturbed(m)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with torch.no_grad():
        before = m(x)
    m.train()
    loss = m(x).pow(2).mean()
    loss.backward()
    wn = [p for n, p in m.named_parameters() if "original" in n]
    assert wn and all(p.grad is not None and p.grad.abs().sum() > 0 for p in wn), "training lost the weight norm"
    opt.step()
    m.eval()
    with torch.no_grad():
        after = m(x)
    assert not torch.equal(after, before)
    assert torch.equal(after, m(x).detach())  # the new weights, same as the training path

    fresh = _perturbed(SEANetEncoder(n_filters=8, dimension=16))
    with torch.no_grad():
        fresh(x)  # fill its cache
    fresh.load_state_dict(m.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(x), after)

    m.double()
    with torch.no_grad():
        y = m(x.double())
    assert y.dtype == torch.float64 and torch.allclose(y.float(), after, atol=1e-5)


def test_offline_transposed_conv_with_its_bias_equals_bias_added_after():
    torch.manual_seed(0)
    layer = StreamingConvTranspose1d(6, 4, kernel_size=8, stride=4).eval()
    with torch.no_grad():
        layer.bias.normal_()
        x = torch.randn(2, 6, 9)
        y = layer(x)
        w = layer.convtr.weight
        ref = F.conv_transpose1d(x, w, None, 4)[..., : 9 * 4] + layer.bias.view(1, -1, 1)
    assert y.shape == (2, 4, 36)
    assert torch.allclose(y, ref, atol=1e-6)
