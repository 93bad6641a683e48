"""The decoder's delay is derived from the decoder; explicit config values must agree; old model directories
that carry a correct value keep loading; the export check and `sonotok stream` use it."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from hydra.errors import InstantiationException
from hydra.utils import instantiate

import sonotok
from sonotok.cli import main as cli_main
from sonotok.errors import ModelLoadError
from sonotok.export.torchscript import export_torchscript
from sonotok.model_io import PRETRAINED_DIR, save_model
from sonotok.models.codec import Codec, derive_decoder_delay
from sonotok.modules.seanet import SEANetDecoder
from sonotok.modules.stft_convnext import VocosDecoder
from sonotok.training.train import compose_config

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
SMALL = ["encoder.width=16", "decoder.width=16", "latent_dim=8"]


def small_spectral_codec(*extra):
    cfg = compose_config(["experiment=tiny", *SMALL, *extra]).codec
    codec = instantiate(cfg).eval()
    assert codec.decoder_delay > 0
    return codec, cfg


@pytest.mark.parametrize("preset, delay", [("tiny", 480), ("fast_16k", 480), ("wavtokenizer_24k_75hz", 960),
                                           ("wavtokenizer_24k_40hz", 1800), ("tiny_seanet", 0),
                                           ("dmcodec_tiny", 480)])
def test_presets_take_the_delay_from_the_decoder(preset, delay):
    cfg = compose_config([f"experiment={preset}"])
    assert cfg.codec.get("decoder_delay") is None, "presets must not hand-copy the decoder's delay"
    codec = instantiate(cfg.codec)
    assert codec.decoder_delay == getattr(codec.decoder, "delay", 0) == delay
    assert codec.latency_samples == codec.hop_length + delay


def test_changing_the_decoder_changes_the_delay():
    """`decoder.n_fft=...` on a preset (or decoder=vocos on the default codec node) used to keep the preset's
    hand-copied 480 and silently misalign streaming, the export check and `sonotok stream`."""
    codec, _ = small_spectral_codec("decoder.n_fft=1280")
    assert codec.decoder_delay == codec.decoder.delay == 1280 - 160
    cfg = compose_config(["decoder=vocos", "decoder.width=16", "latent_dim=8", "encoder.n_filters=2"])
    assert cfg.codec.get("decoder_delay") is None  # the default codec node (was 0)
    codec = instantiate(cfg.codec)
    assert isinstance(codec.decoder, VocosDecoder) and codec.decoder_delay == 480


def test_explicit_delay_that_disagrees_is_an_error():
    with pytest.raises(InstantiationException, match=r"decoder_delay=100 disagrees with the decoder: VocosDecoder .* 480"):
        small_spectral_codec("codec.decoder_delay=100")
    codec, _ = small_spectral_codec("codec.decoder_delay=480")  # an explicit value that agrees is fine
    assert codec.decoder_delay == 480
    dec = SEANetDecoder(1, 8, 4, (2, 4), (1,))
    assert derive_decoder_delay(dec) == 0 and derive_decoder_delay(dec, 0) == 0
    with pytest.raises(ValueError, match="SEANetDecoder delays its stream by 0 samples"):
        derive_decoder_delay(dec, 480)


def test_old_model_directories_with_an_explicit_delay_keep_loading(tmp_path):
    assert yaml.safe_load((LEGACY / "tiny_seanet_rvq" / "config.yaml").read_text())["decoder_delay"] == 0
    legacy = sonotok.load(LEGACY / "tiny_seanet_rvq")
    assert isinstance(legacy, Codec) and legacy.decoder_delay == 0
    if (PRETRAINED_DIR / "default" / "model.safetensors").is_file():
        assert yaml.safe_load((PRETRAINED_DIR / "default" / "config.yaml").read_text())["decoder_delay"] == 480
        assert sonotok.load("default").decoder_delay == 480
    # a directory whose explicit value disagrees with its decoder is refused, naming the problem
    bad = tmp_path / "bad"
    shutil.copytree(LEGACY / "tiny_seanet_rvq", bad)
    cfg = yaml.safe_load((bad / "config.yaml").read_text())
    cfg["decoder_delay"] = 480
    (bad / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ModelLoadError, match="decoder_delay=480 disagrees with the decoder"):
        sonotok.load(bad)


def test_new_model_directories_record_no_hand_copied_delay(tmp_path):
    codec, cfg = small_spectral_codec()
    d = save_model(codec, tmp_path / "m", cfg)
    assert yaml.safe_load((d / "config.yaml").read_text()).get("decoder_delay") is None
    assert sonotok.load(d).decoder_delay == 480


def test_export_check_accounts_for_decoder_delay(tmp_path):
    codec, _ = small_spectral_codec()
    info = export_torchscript(codec, tmp_path / "art")
    check = info["torchscript_check"]
    assert check["codes_equal"] == 1.0
    assert check["stream_max_abs_diff"] < 1e-5, check  # the whole signal, its last `delay` samples included
    assert info["decoder_delay"] == 480 and info["latency_samples"] == 480 + codec.hop_length


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
    # the file is PCM16: compare within quantization error, the last `decoder_delay` samples included
    d = codec.decoder_delay
    assert np.abs(y - np.clip(ref, -1, 1)).max() < 1.5 / 32768
    # without the alignment the start would be shifted by d samples: check the alignment is right
    assert np.abs(y[:-d] - np.clip(ref[:-d], -1, 1)).max() < 0.1 * np.abs(y[d:] - ref[:-d]).max()
