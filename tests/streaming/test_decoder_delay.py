"""Codecs with a declared decoder delay (inverse-STFT heads): export check and `sonotok stream` align it."""

import numpy as np
import soundfile as sf
import torch
from hydra.utils import instantiate

from sonotok.cli import main as cli_main
from sonotok.export.torchscript import export_torchscript
from sonotok.model_io import save_model
from sonotok.training.train import compose_config


def small_spectral_codec():
    cfg = compose_config(["experiment=tiny", "encoder.width=16", "decoder.width=16", "latent_dim=8"]).codec
    codec = instantiate(cfg).eval()
    assert codec.decoder_delay > 0
    return codec, cfg


def test_export_check_accounts_for_decoder_delay(tmp_path):
    codec, _ = small_spectral_codec()
    info = export_torchscript(codec, tmp_path / "art")
    check = info["torchscript_check"]
    assert check["codes_equal"] == 1.0
    assert check["stream_max_abs_diff"] < 1e-4, check


def test_stream_command_output_is_time_aligned(tmp_path):
    torch.manual_seed(0)
    codec, cfg = small_spectral_codec()
    model_dir = save_model(codec, tmp_path / "m", cfg)
    sr = codec.sample_rate
    t = np.arange(int(0.5 * sr)) / sr
    x = (0.3 * np.sin(2 * np.pi * 220 * t) * np.hanning(t.size)).astype(np.float32)
    sf.write(tmp_path / "in.wav", x, sr, subtype="FLOAT")
    rc = cli_main(["stream", "--model", str(model_dir), str(tmp_path / "in.wav"), "--out",
                   str(tmp_path / "out.wav"), "--chunk-ms", "10"])
    assert rc == 0
    y, sr2 = sf.read(tmp_path / "out.wav", dtype="float32")
    assert sr2 == sr and y.shape[0] == x.shape[0]
    ref = codec.decode(codec.encode(torch.from_numpy(x)[None, None]))[0, 0, : x.shape[0]].numpy()
    # the file is PCM16: compare within quantization error. The last `decoder_delay` samples of a stream
    # are completed by decoding silent flush frames, which offline decoding does not have.
    d = codec.decoder_delay
    assert np.abs(y[:-d] - np.clip(ref[:-d], -1, 1)).max() < 2e-3
    # without the flush the start would be shifted by d samples: check the alignment is right
    assert np.abs(y[:-d] - np.clip(ref[:-d], -1, 1)).max() < 0.1 * np.abs(y[d:] - ref[:-d]).max()
