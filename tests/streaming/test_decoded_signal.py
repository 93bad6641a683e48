"""One decoded signal: offline decode, chunked decode, the streaming session, the exported artifact and
`sonotok stream` give the same samples at the same positions, the last `decoder_delay` ones included.

All on a tiny `experiment=tiny` codec (inverse-STFT decoder: delay 480 samples, hop 320), with audio that
is longer than the chunks, ends in a partial frame, and odd chunk sizes.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra.utils import instantiate

from sonotok.export.runtime import StreamRunner, stream_audio
from sonotok.export.torchscript import export_torchscript
from sonotok.model_io import save_model
from sonotok.tokenizer.ops import decode_batch, decode_codes
from sonotok.training.train import compose_config

TINY = ["experiment=tiny", "encoder.width=16", "decoder.width=16", "latent_dim=8", "encoder.num_blocks=1",
        "encoder.num_post_blocks=1", "decoder.num_pre_blocks=1", "decoder.num_blocks=1"]
N = 12320  # 38.5 frames of 320 samples: longer than every chunk below, ends in a partial frame
PCM16 = 1.5 / 32768  # write (x 32767, rounded) and read back (/ 32768) of audio within [-1, 1]


def delay_codec(seed: int = 0):
    """(codec, config): random weights, the log-magnitude bias raised from -3 to 0 so that the output
    (peak about 0.2) is far above PCM16 quantization."""
    torch.manual_seed(seed)
    cfg = compose_config(TINY).codec
    codec = instantiate(cfg).eval()
    head = codec.decoder.model.layers[-1]
    with torch.no_grad():
        head.proj.bias[: head.n_bins] = 0.0
    assert codec.decoder_delay == 480 and codec.hop_length == 320
    return codec, cfg


def tone(n: int = N, sr: int = 16000) -> torch.Tensor:
    t = torch.arange(n) / sr
    return (0.5 * torch.sin(2 * torch.pi * 220 * t) * (1 + 0.3 * torch.sin(2 * torch.pi * 3 * t)))[None, None]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The codec, its model directory, its TorchScript artifact, the input and the reference decoded signal."""
    root = tmp_path_factory.mktemp("decoded")
    codec, cfg = delay_codec()
    model_dir = save_model(codec, root / "model", cfg)
    art = root / "art"
    meta = export_torchscript(codec, art)
    x = tone()
    codes = codec.encode(x)
    ref = codec.decode(codes)
    assert ref.shape[-1] == codes.shape[-1] * codec.hop_length > N
    assert ref[..., -codec.decoder_delay:].abs().max() > 0.01, "the tail must carry signal for this test"
    return {"codec": codec, "model_dir": model_dir, "art": art, "meta": meta, "x": x, "codes": codes, "ref": ref}


def test_training_reconstruction_is_the_decoded_signal(setup):
    """The training loss sees Codec.forward's recon (training crops are whole frames): the decoded signal,
    its partly overlap-added last `delay` samples included, so training optimises what every path returns."""
    codec = setup["codec"]
    x = setup["x"][..., : 38 * codec.hop_length]
    with torch.no_grad():
        recon = codec(x)["recon"]
    torch.testing.assert_close(recon, codec.decode(codec.encode(x)), atol=1e-6, rtol=0)


@pytest.mark.parametrize("chunk_frames", [1, 7, 13])
def test_chunked_decode_of_a_long_code_file(setup, chunk_frames):
    codec, codes, ref = setup["codec"], setup["codes"][0], setup["ref"][0]
    assert codes.shape[-1] > chunk_frames
    full = decode_codes(codec, codes, chunk_frames=chunk_frames)
    assert full.shape == ref.shape
    torch.testing.assert_close(full, ref, atol=1e-6, rtol=0)  # tail included
    cropped = decode_codes(codec, codes, length=N, chunk_frames=chunk_frames)
    torch.testing.assert_close(cropped, ref[..., :N], atol=1e-6, rtol=0)


@pytest.mark.parametrize("chunk", [1, 97, 333, 1000])
def test_streaming_session_with_flush(setup, chunk):
    codec, x, codes, ref = setup["codec"], setup["x"], setup["codes"], setup["ref"]
    cs, ys = [], []
    with codec.streaming(1) as s:
        for i in range(0, N, chunk):
            c = s.encode(x[..., i : i + chunk])
            cs.append(c)
            ys.append(s.decode(c))
        c, y = s.flush()
        cs.append(c)
        ys.append(y)
    assert torch.equal(torch.cat(cs, -1), codes)
    y = torch.cat(ys, -1)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, atol=1e-6, rtol=0)
    with pytest.raises(RuntimeError, match="closed"):
        s.encode(x[..., :10])


def test_session_decode_only_and_reset(setup):
    codec, codes, ref = setup["codec"], setup["codes"], setup["ref"]
    s = codec.streaming(1)
    first = s.decode(codes[..., :1])
    assert first.shape[-1] == 0, "the first frame is all pre-roll (delay 480 > hop 320)"
    s.reset()  # a new stream: the pre-roll is dropped again, nothing of the first stream remains
    parts = [s.decode(codes[..., i : i + 5]) for i in range(0, codes.shape[-1], 5)]
    flushed_codes, tail = s.flush()
    assert flushed_codes.shape == (1, codec.num_codebooks, 0), "nothing was encoded: no codes to flush"
    assert tail.shape[-1] == codec.decoder_delay
    torch.testing.assert_close(torch.cat(parts + [tail], -1), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["eager", "artifact", "artifact_as_saved"])
@pytest.mark.parametrize("chunk", [77, 320, 500])
def test_stream_runner_eager_and_exported_artifact(setup, kind, chunk):
    if kind == "eager":
        runner = StreamRunner(model=str(setup["model_dir"]))
    else:
        runner = StreamRunner(artifact=str(setup["art"]), optimize=kind == "artifact")
    assert runner.decoder_delay == 480
    x = setup["x"]
    pieces = []
    result = stream_audio(runner, (x[..., i : i + chunk] for i in range(0, N, chunk)), chunk,
                          on_audio=pieces.append)
    assert torch.equal(result.codes, setup["codes"][0])
    assert result.audio.shape == (1, N)
    torch.testing.assert_close(result.audio, setup["ref"][0, :, :N], atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat(pieces, -1)[0], result.audio, atol=0, rtol=0)
    report = result.report()
    assert report["chunks"] == -(-N // chunk) and report["frames"] == setup["codes"].shape[-1]


def test_export_check_covers_the_whole_signal(setup):
    meta = setup["meta"]
    assert meta["decoder_delay"] == 480 and meta["format_version"] >= 2
    check = meta["torchscript_check"]
    assert check["codes_equal"] == 1.0 and check["stream_max_abs_diff"] < 1e-5, check
    dec = torch.jit.load(str(setup["art"] / "decoder_stream.pt"))
    assert dec.flush(dec.init_state(1)).shape == (1, 1, 480)


def test_stream_command_file_and_stdout(setup, tmp_path):
    """`sonotok stream` writes the decoded signal, aligned, tail included, to a file and to stdout alike."""
    from sonotok.cli import main

    x16 = np.round(setup["x"][0, 0].numpy() * 32767).astype(np.int16)
    xq = torch.from_numpy(x16.astype(np.float32) / 32768)[None, None]  # what both paths read
    sf.write(tmp_path / "in.wav", x16, 16000, subtype="PCM_16")
    codec = setup["codec"]
    ref_codes = codec.encode(xq)
    ref = codec.decode(ref_codes)[0, 0, :N].numpy()
    assert main(["stream", "--model", str(setup["model_dir"]), str(tmp_path / "in.wav"), "--out",
                 str(tmp_path / "out.wav"), "--chunk-ms", "13.1"]) == 0
    y, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    assert y.shape == (N,)
    np.testing.assert_array_equal(np.load(tmp_path / "out.codes.npy"), ref_codes[0].numpy())
    assert np.abs(y - ref).max() < PCM16
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(
        [sys.executable, "-m", "sonotok.cli", "stream", "--artifact", str(setup["art"]), "-", "--out", "-",
         "--chunk-ms", "7.3", "--threads", "1"],
        input=x16.tobytes(), capture_output=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    z = np.frombuffer(proc.stdout, dtype=np.int16).astype(np.float32) / 32768
    assert z.shape == (N,)
    assert np.abs(z - ref).max() < PCM16, "stdout must carry the same aligned samples as the file"


def test_padded_decode_batch_equals_each_item_alone(setup):
    """Inverse-STFT frames overlap-add into the samples before them: batch padding must not reach a tail."""
    codec, codes = setup["codec"], setup["codes"][0]
    items = [codes[:, :n] for n in (38, 11, 25, 11, 3)]
    out = decode_batch(codec, items)
    for c, y in zip(items, out):
        alone = codec.decode(c[None])[0]
        assert y.shape == alone.shape
        torch.testing.assert_close(y, alone, atol=1e-6, rtol=0)


def test_tokenize_then_decode_files_in_chunks(setup, tmp_path):
    """The corpus path (`sonotok tokenize` then `sonotok decode`, which streams code files longer than
    --chunk-frames): the written audio is the decoded signal, aligned and complete."""
    from sonotok.tokenizer.runner import decode_files, tokenize

    codec = setup["codec"]
    x16 = np.round(setup["x"][0, 0].numpy() * 32767).astype(np.int16)
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "a.wav", x16, 16000, subtype="PCM_16")
    assert tokenize(codec, [tmp_path / "in"], tmp_path / "codes", progress=False).written == 1
    summary = decode_files(codec, [tmp_path / "codes"], tmp_path / "dec", chunk_frames=5, progress=False)
    assert summary.written == 1, summary.failures
    y, _ = sf.read(tmp_path / "dec" / "a.wav", dtype="float32")
    xq = torch.from_numpy(x16.astype(np.float32) / 32768)[None, None]
    ref = codec.decode(codec.encode(xq))[0, 0, :N].numpy()
    assert y.shape == (N,)
    assert np.abs(y - ref).max() < PCM16


@pytest.mark.slow
def test_torch_export_programs_flush_the_tail(setup, tmp_path):
    from sonotok.export.torch_export import export_programs

    meta = export_programs(setup["codec"], tmp_path)
    assert (tmp_path / "decoder_flush.pt2").is_file() and meta["torch_export"]["decoder_delay"] == 480
    check = meta["torch_export_check"]
    assert check["codes_equal"] == 1.0 and check["stream_max_abs_diff"] < 1e-5, check
