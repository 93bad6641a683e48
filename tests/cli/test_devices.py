"""``--device`` reaches the model for ``tokenize``, ``decode`` and ``stream`` (checkpoints and model directories).

Without a GPU the plumbing is checked with torch's ``meta`` device (the model must end up there, not on the
CPU); the ``gpu`` tests run the commands on CUDA.
"""

import argparse
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tokenizer"))
from tok_helpers import build_tiny, write_wav  # noqa: E402

from sonotok.cli import main  # noqa: E402
from sonotok.model_io import save_model  # noqa: E402


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A model directory and a sonotok checkpoint of the same tiny codec."""
    from omegaconf import OmegaConf

    root = tmp_path_factory.mktemp("models")
    codec, cfg = build_tiny()
    model_dir = save_model(codec, root / "tiny", cfg)
    ckpt = root / "last.ckpt"
    torch.save({"state_dict": {f"codec.{k}": v for k, v in codec.state_dict().items()}, "global_step": 7,
                "sonotok_model_config": OmegaConf.to_container(cfg, resolve=True)}, ckpt)
    return {"dir": model_dir, "ckpt": ckpt}


@pytest.mark.parametrize("kind", ["dir", "ckpt"])
@pytest.mark.parametrize("command", ["tokenize", "decode"])
def test_tokenize_and_decode_load_the_model_on_the_requested_device(sources, kind, command):
    from sonotok.cli.tokens import _load

    args = argparse.Namespace(model=str(sources[kind]), device="meta", threads=None, command=command)
    codec = _load(args)
    assert {p.device.type for p in codec.parameters()} == {"meta"}


@pytest.mark.parametrize("kind", ["dir", "ckpt"])
def test_stream_loads_the_model_on_the_requested_device(sources, kind):
    from sonotok.export.runtime import StreamRunner

    runner = StreamRunner(model=str(sources[kind]), device="meta")
    assert {p.device.type for p in runner.codec.parameters()} == {"meta"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("command", ["tokenize", "decode"])
def test_cuda_without_a_gpu_is_a_clear_error(sources, tmp_path, command, capsys):
    rc = main([command, "-m", str(sources["ckpt"]), str(tmp_path), "-o", str(tmp_path / "o"), "--device", "cuda",
               "--no-progress"])
    assert rc == 2
    assert "--device cuda: no CUDA device is available here" in capsys.readouterr().err


@pytest.mark.gpu
def test_tokenize_decode_on_cuda_from_a_checkpoint(sources, tmp_path):
    import numpy as np

    import sonotok
    from sonotok.tokenizer.formats import load_codes

    src = tmp_path / "in"
    for i, sec in enumerate([0.31, 0.5, 0.77, 1.0, 0.123, 0.6, 2.3]):
        write_wav(src / f"f{i}.wav", sec, seed=i)
    outs = {}
    for bs in (1, 4):
        out = tmp_path / f"codes{bs}"
        assert main(["tokenize", "-m", str(sources["ckpt"]), str(src), "-o", str(out), "--device", "cuda",
                     "-b", str(bs), "--no-progress"]) == 0
        rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
        assert {r["device"].split("/")[0] for r in rows} == {"cuda"}
        outs[bs] = {r["rel"]: load_codes(out / r["codes"])[0] for r in rows}
    for rel in outs[1]:  # batch == single on the GPU
        np.testing.assert_array_equal(outs[1][rel], outs[4][rel])
    cpu = sonotok.load(sources["ckpt"])
    from sonotok.tokenizer import encode_file

    agree = np.mean([np.mean(encode_file(cpu, src / rel).numpy() == outs[1][rel]) for rel in outs[1]])
    print(f"CPU vs CUDA code agreement: {agree:.4f}")
    assert agree > 0.99
    assert main(["decode", "-m", str(sources["ckpt"]), str(tmp_path / "codes1"), "-o", str(tmp_path / "wav"),
                 "--device", "cuda", "--no-progress"]) == 0
    assert len(list((tmp_path / "wav").glob("*.wav"))) == 7


@pytest.mark.gpu
def test_stream_on_cuda_from_a_checkpoint(sources):
    from sonotok.export.runtime import StreamRunner

    runner = StreamRunner(model=str(sources["ckpt"]), device="cuda")
    codes, audio = runner.step(torch.randn(1, 1, runner.hop * 3))
    assert codes.device.type == "cuda" and audio.shape[-1] == runner.hop * 3
