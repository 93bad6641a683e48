"""Imported models train: ``train.py init_from=DIR`` builds them, and a training pass has finite losses and
gradients on encoder, quantizer and decoder (the fine-tuning recipe DAC users ask for)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from sonotok.cli.import_ import import_checkpoint


@pytest.mark.parametrize("family,ref_name,rate", [("encodec_24khz", "encodec_24khz", 24000),
                                                  ("dac_16khz", "dac_16khz", 16000),
                                                  ("mimi", "mimi", 24000)])
def test_init_from_an_imported_directory_trains(family, ref_name, rate, tmp_path, reference_factory):
    from sonotok.training.train import build_codec

    ref = reference_factory(ref_name)
    opts = {"bandwidth": 1.5} if family.startswith("encodec") else {}
    d = import_checkpoint(family, ref.checkpoint, tmp_path / "m", **opts)
    cfg = OmegaConf.create({"init_from": str(d), "data": {"sample_rate": rate}, "codec": None})
    codec, model_config = build_codec(cfg)
    assert model_config["_target_"].startswith("sonotok.models.imported.")
    assert codec.training
    wav = ref["input/noise"][..., : codec.hop_length * 4]
    out = codec(wav)
    assert out["recon"].shape == wav.shape
    loss = (out["recon"] - wav).abs().mean() + sum(out["losses"].values())
    assert torch.isfinite(loss)
    loss.backward()
    for part in ("encoder", "quantizer", "decoder"):
        grads = [p.grad for p in getattr(codec, part).parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"no gradient reaches the {part}"
    with pytest.raises(ValueError, match=f"the model runs at {rate} Hz"):
        build_codec(OmegaConf.create({"init_from": str(d), "data": {"sample_rate": rate + 1}, "codec": None}))
