"""Codec cost: FLOP counts per second of audio against hand-computed values, parameters, latency."""

from torch import nn

from sonotok.models.cost import codec_cost


class ConvCodec(nn.Module):
    """encode: Conv1d(1 -> 8, k=4, stride 4); decode: ConvTranspose1d(8 -> 1, k=4, stride 4)."""

    sample_rate, channels, latency_ms = 1000, 1, 4.0

    def __init__(self):
        super().__init__()
        self.encoder = nn.Conv1d(1, 8, 4, stride=4)
        self.decoder = nn.ConvTranspose1d(8, 1, 4, stride=4)

    def encode(self, wav):
        return self.encoder(wav)

    def decode(self, z):
        return self.decoder(z)


def test_flops_per_second_match_the_hand_count():
    cost = codec_cost(ConvCodec(), seconds=2.0)
    # 250 output frames per second, each 8 channels x 4 taps x 1 input channel MACs, 2 FLOPs per MAC
    assert cost["encoder_mflops_per_s"] == 2 * 250 * 8 * 4 / 1e6
    # the transposed conv does the same number of MACs (250 frames x 8 in x 4 taps x 1 out)
    assert cost["decoder_mflops_per_s"] == 2 * 250 * 8 * 4 / 1e6
    assert cost["total_mflops_per_s"] == cost["encoder_mflops_per_s"] + cost["decoder_mflops_per_s"]
    assert cost["parameters"] == (8 * 4 + 8) + (8 * 4 + 1)
    assert cost["encoder_parameters"] == 40 and cost["decoder_parameters"] == 33
    assert cost["latency_ms"] == 4.0


def test_shipped_default_is_inside_the_low_complexity_envelope():
    import sonotok

    cost = codec_cost(sonotok.load("default"), seconds=1.0)
    assert 2.3e6 < cost["parameters"] < 2.5e6  # 2.40 M (model card)
    assert 150 < cost["encoder_mflops_per_s"] < 260 and 150 < cost["decoder_mflops_per_s"] < 260  # ~208 / ~201
    assert cost["total_mflops_per_s"] <= 700 and cost["decoder_mflops_per_s"] <= 300  # LRAC 2025 ceilings


def test_export_json_reports_the_cost(tmp_path):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tokenizer"))
    from tok_helpers import build_tiny

    from sonotok.export.torchscript import export_torchscript

    codec, _ = build_tiny()
    export_torchscript(codec, tmp_path / "art", check=False)
    meta = json.loads((tmp_path / "art" / "export.json").read_text())
    assert meta["cost"] == codec_cost(codec)
    assert meta["cost"]["parameters"] == sum(p.numel() for p in codec.parameters())
