"""TorchScript and torch.export artifacts: load without sonotok, match eager; CLI export/stream."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sonotok.export.torch_export import export_programs
from sonotok.export.torchscript import export_torchscript
from sonotok.export.wrappers import build_export_modules
from sonotok.models.codec import Codec
from sonotok.modules.seanet import SEANetDecoder, SEANetEncoder
from sonotok.quantizers.rvq import ResidualVQ

ENC = {"_target_": "sonotok.modules.seanet.SEANetEncoder", "channels": 1, "dimension": 16, "n_filters": 4,
       "strides": [2, 4], "dilations": [1, 3]}
CONFIG = {
    "_target_": "sonotok.models.Codec",
    "encoder": ENC,
    "quantizer": {"_target_": "sonotok.quantizers.ResidualVQ", "dim": 16, "num_codebooks": 2,
                  "codebook_size": 32, "kmeans_init": False},
    "decoder": {**ENC, "_target_": "sonotok.modules.seanet.SEANetDecoder"},
    "sample_rate": 16000,
    "name": "tinytest",
}


def make_codec():
    torch.manual_seed(0)
    return Codec(
        SEANetEncoder(1, 16, 4, (2, 4), (1, 3)), ResidualVQ(16, 2, 32, kmeans_init=False),
        SEANetDecoder(1, 16, 4, (2, 4), (1, 3)), name="tinytest",
    ).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Export once (torch.export is slow): artifacts + reference tensors computed by the eager codec."""
    out = tmp_path_factory.mktemp("artifact")
    codec = make_codec()
    meta = export_torchscript(codec, out, model_id="tinytest-0")
    meta = export_programs(codec, out)
    g = torch.Generator().manual_seed(1)
    wav = torch.randn(1, 1, 8 * 30 + 3, generator=g) * 0.3
    codes = codec.encode(wav)
    audio = codec.decode(codes)
    torch.save({"wav": wav, "codes": codes, "audio": audio}, out / "ref.pt")
    return codec, out, meta


def test_export_json(exported):
    codec, out, meta = exported
    on_disk = json.loads((out / "export.json").read_text())
    assert on_disk == meta
    for key in ("sample_rate", "hop_length", "frame_rate", "num_codebooks", "codebook_size", "latency_ms",
                "encoder_state_shapes_batch1", "decoder_state_shapes_batch1", "model_id"):
        assert key in meta, key
    assert meta["model_id"] == "tinytest-0"
    assert meta["hop_length"] == 8 and meta["num_codebooks"] == 2 and meta["codebook_size"] == 32
    assert meta["latency_ms"] == pytest.approx(0.5)
    assert meta["torchscript_check"]["codes_equal"] == 1.0
    assert meta["torch_export_check"]["codes_equal"] == 1.0
    assert meta["torchscript_check"]["stream_max_abs_diff"] < 1e-5
    for f in ("encoder_stream.pt", "decoder_stream.pt", "codec.pt", "encoder_stream.pt2", "decoder_stream.pt2",
              "encode.pt2", "decode.pt2"):
        assert (out / f).is_file(), f


@pytest.mark.parametrize("chunk", [1, 7, 8, 37, 243])
def test_scripted_stream_any_chunk(exported, chunk):
    codec, out, _ = exported
    enc = torch.jit.load(str(out / "encoder_stream.pt"))
    dec = torch.jit.load(str(out / "decoder_stream.pt"))
    ref = torch.load(out / "ref.pt")
    wav = codec.pad_to_frames(ref["wav"])
    es, ds = enc.init_state(1), dec.init_state(1)
    codes, audio = [], []
    for i in range(0, wav.shape[-1], chunk):
        c, es = enc(wav[..., i : i + chunk], es)
        y, ds = dec(c, ds)
        codes.append(c)
        audio.append(y)
    assert torch.equal(torch.cat(codes, -1), ref["codes"])
    torch.testing.assert_close(torch.cat(audio, -1), ref["audio"], atol=1e-5, rtol=1e-4)


def test_export_leaves_codec_untouched():
    codec = make_codec()
    wav = torch.randn(1, 1, 64)
    before = codec.encode(wav)
    build_export_modules(codec)
    assert torch.equal(codec.encode(wav), before)
    assert any(torch.nn.utils.parametrize.is_parametrized(m) for m in codec.modules())


def _site_dir():
    return str(Path(torch.__file__).resolve().parent.parent)


# Runs in `python -I -S`: no site-packages processing (so no editable-install .pth), cwd not on the path;
# only torch's site-packages directory is appended by hand. sonotok must not be importable there.
HIDDEN = textwrap.dedent(
    """
    import sys
    sys.path.append(SITE)
    try:
        import sonotok  # noqa
    except ImportError:
        pass
    else:
        raise SystemExit("sonotok is importable: " + sonotok.__file__)
    import json, torch
    torch.set_num_threads(1)
    ref = torch.load(OUT + "/ref.pt")
    wav, codes, audio = ref["wav"], ref["codes"], ref["audio"]
    hop = json.load(open(OUT + "/export.json"))["hop_length"]
    pad = (-wav.shape[-1]) % hop
    wavp = torch.nn.functional.pad(wav, [0, pad])
    res = {}
    if KIND == "jit":
        enc = torch.jit.load(OUT + "/encoder_stream.pt")
        dec = torch.jit.load(OUT + "/decoder_stream.pt")
        off = torch.jit.load(OUT + "/codec.pt")
        oc = off.encode(wav)
        res["offline_codes_equal"] = bool(torch.equal(oc, codes))
        res["offline_diff"] = float((off.decode(oc) - audio).abs().max())
        chunk = 5
    else:
        enc_p = torch.export.load(OUT + "/encoder_stream.pt2").module()
        dec_p = torch.export.load(OUT + "/decoder_stream.pt2").module()
        meta = json.load(open(OUT + "/export.json"))["torch_export"]
        enc_states = [torch.zeros(s) for s in meta["encoder_state_shapes"]]
        dec_states = [torch.zeros(s) for s in meta["decoder_state_shapes"]]
        oc = torch.export.load(OUT + "/encode.pt2").module()(wavp)
        res["offline_codes_equal"] = bool(torch.equal(oc, codes))
        res["offline_diff"] = float((torch.export.load(OUT + "/decode.pt2").module()(oc) - audio).abs().max())
        class E:
            def init_state(self, b): return enc_states
            def __call__(self, x, s): return enc_p(x, s)
        class D:
            def init_state(self, b): return dec_states
            def __call__(self, x, s): return dec_p(x, s)
        enc, dec = E(), D()
        chunk = hop
    es, ds = enc.init_state(1), dec.init_state(1)
    cs, ys = [], []
    for i in range(0, wavp.shape[-1], chunk):
        c, es = enc(wavp[..., i : i + chunk], es)
        y, ds = dec(c, ds)
        cs.append(c); ys.append(y)
    res["stream_codes_equal"] = bool(torch.equal(torch.cat(cs, -1), codes))
    res["stream_diff"] = float((torch.cat(ys, -1) - audio).abs().max())
    res["sonotok_in_modules"] = any(m.startswith("sonotok") for m in sys.modules)
    print("RESULT" + json.dumps(res))
    """
)


@pytest.mark.parametrize("kind", ["jit", "export"])
def test_artifact_loads_without_sonotok(exported, kind, tmp_path):
    _, out, _ = exported
    code = f"SITE = {_site_dir()!r}\nOUT = {str(out)!r}\nKIND = {kind!r}\n" + HIDDEN
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    res = json.loads(line[len("RESULT"):])
    assert res["offline_codes_equal"] and res["stream_codes_equal"], res
    assert res["offline_diff"] < 1e-5 and res["stream_diff"] < 1e-5, res
    assert not res["sonotok_in_modules"]


@pytest.mark.gpu
def test_artifact_runs_on_cuda(exported):
    codec, out, _ = exported
    ref = torch.load(out / "ref.pt")
    dev = torch.device("cuda")
    enc = torch.jit.load(str(out / "encoder_stream.pt"), map_location=dev)
    dec = torch.jit.load(str(out / "decoder_stream.pt"), map_location=dev)
    off = torch.jit.load(str(out / "codec.pt"), map_location=dev)
    wav = codec.pad_to_frames(ref["wav"]).to(dev)
    codes = off.encode(wav)
    assert codes.is_cuda
    agree = (codes.cpu() == ref["codes"]).float().mean().item()
    assert agree > 0.98, agree  # TF32/cuDNN numerics may flip a near-tie
    torch.testing.assert_close(off.decode(ref["codes"].to(dev)).cpu(), ref["audio"], atol=1e-3, rtol=1e-3)
    es, ds = enc.init_state(1), dec.init_state(1)
    assert all(s.is_cuda for s in es + ds)
    ys = []
    for i in range(0, wav.shape[-1], 8):
        c, es = enc(wav[..., i : i + 8], es)
        y, ds = dec(ref["codes"][..., i // 8 : i // 8 + 1].to(dev), ds)
        ys.append(y)
    torch.testing.assert_close(torch.cat(ys, -1).cpu(), ref["audio"], atol=1e-3, rtol=1e-3)
    from torch.export.passes import move_to_device_pass

    ep = move_to_device_pass(torch.export.load(str(out / "decode.pt2")), dev)
    torch.testing.assert_close(ep.module()(ref["codes"].to(dev)).cpu(), ref["audio"], atol=1e-3, rtol=1e-3)


# ----------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from sonotok.model_io import save_model

    out = tmp_path_factory.mktemp("model") / "tiny"
    from hydra.utils import instantiate

    codec = instantiate(CONFIG)
    save_model(codec, out, CONFIG)
    return out


@pytest.fixture(scope="module")
def wav_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("wav") / "in.wav"
    t = np.arange(16000 // 4) / 16000
    sf.write(p, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    return p


def test_cli_export_and_stream(model_dir, wav_file, tmp_path, capsys):
    from sonotok.cli import main

    art = tmp_path / "art"
    assert main(["export", "--model", str(model_dir), "--out", str(art), "--no-torch-export"]) == 0
    meta = json.loads((art / "export.json").read_text())
    assert meta["model_id"].startswith("tinytest-") and meta["torchscript_check"]["codes_equal"] == 1.0
    import sonotok

    codec = sonotok.load(model_dir)
    wav = torch.from_numpy(sf.read(wav_file, dtype="float32")[0])[None, None]
    ref_codes = codec.encode(wav)[0].numpy()
    ref_audio = codec.decode(codec.encode(wav), length=wav.shape[-1])[0, 0].numpy()
    for src in (["--model", str(model_dir)], ["--artifact", str(art)], ["--artifact", str(art), "--no-optimize"]):
        out = tmp_path / f"out_{src[0][2:]}_{len(src)}.wav"
        capsys.readouterr()
        rc = main(["stream", *src, str(wav_file), "--out", str(out), "--chunk-ms", "1.3", "--json", "--threads", "1"])
        assert rc == 0
        report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        expected = {2: "eager", 3: "torchscript"} if src[0] == "--model" else {2: "torchscript (frozen, optimized)",
                                                                                  3: "torchscript"}
        assert report["backend"] == expected[len(src)]
        stats = report["compute_ms"]
        assert report["chunks"] == -(-wav.shape[-1] // report["chunk_samples"]) > 100
        assert 0 < stats["mean_ms"] <= stats["max_ms"] and 0 < stats["p95_ms"] <= stats["max_ms"]
        # the real-time factor is the total per-chunk compute over the audio duration
        assert report["rtf"] * report["audio_s"] * 1000 == pytest.approx(report["chunks"] * stats["mean_ms"])
        assert report["audio_s"] == pytest.approx(wav.shape[-1] / 16000)
        assert report["algorithmic_latency_ms"] == pytest.approx(1000 * (8 + 21 - 1) / 16000)
        assert report["rtf"] > 0
        codes = np.load(str(out.with_suffix("")) + ".codes.npy")
        np.testing.assert_array_equal(codes, ref_codes)
        y, sr = sf.read(out, dtype="float32")
        assert sr == 16000 and y.shape[0] == wav.shape[-1]
        np.testing.assert_allclose(y, ref_audio, atol=1e-4)  # 16-bit or float wav: allow quantization


def test_cli_stream_stdin_pipe(model_dir, wav_file, tmp_path):
    """`-` reads raw s16le PCM from stdin and `--out -` writes s16le to stdout (a pipe)."""
    x, _ = sf.read(wav_file, dtype="int16")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    codes_out = tmp_path / "c.npy"
    proc = subprocess.run(
        [sys.executable, "-m", "sonotok.cli", "stream", "--model", str(model_dir), "-", "--out", "-",
         "--chunk-ms", "20", "--stdin-rate", "16000", "--codes-out", str(codes_out), "--threads", "1"],
        input=x.tobytes(), capture_output=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    y = np.frombuffer(proc.stdout, dtype=np.int16)
    assert y.shape[0] == x.shape[0]
    assert b"real-time factor" in proc.stderr
    assert np.load(codes_out).shape == (2, -(-x.shape[0] // 8))


def test_stream_report_statistics():
    """The timing report of `sonotok stream` from known per-chunk times (mean, p95, max, real-time factor)."""
    from sonotok.export.runtime import StreamResult

    times = [0.001] * 19 + [0.021]  # 20 chunks of 320 samples at 16 kHz: 0.4 s of audio
    r = StreamResult(codes=torch.zeros(2, 20, dtype=torch.long), audio=torch.zeros(1, 6400), num_samples=6400,
                     sample_rate=16000, hop_length=320, decoder_delay=480, chunk_samples=320, times_s=times)
    rep = r.report()
    assert rep["chunks"] == 20 and rep["frames"] == 20 and rep["audio_s"] == pytest.approx(0.4)
    assert rep["compute_ms"] == pytest.approx({"mean_ms": 2.0, "p95_ms": 1.0, "max_ms": 21.0})
    assert rep["rtf"] == pytest.approx(0.04 / 0.4) and rep["x_realtime"] == pytest.approx(10.0)
    assert rep["algorithmic_latency_ms"] == pytest.approx(1000 * (320 + 480) / 16000)
    assert rep["model_latency_ms"] == pytest.approx(50.0)
    assert rep["latency_plus_p95_compute_ms"] == pytest.approx(51.0)


def test_noncausal_model_is_refused_before_anything_is_written(tmp_path):
    """X-Codec (teacher at the input) has no streaming encoder: export refuses it up front, naming why."""
    from sonotok.errors import SonotokError
    from sonotok.models.semantic import XCodec
    from tests.semantic.conftest import TinyTeacher, tiny_codec_parts

    enc, q, dec = tiny_codec_parts()
    codec = XCodec(enc, q, dec, teacher=TinyTeacher(), teacher_dim=12, semantic_dim=8, name="tiny-xcodec").eval()
    for export in (export_torchscript, export_programs):
        out = tmp_path / export.__name__
        with pytest.raises(SonotokError, match="tiny-xcodec .*cannot be exported: it is not causal"):
            export(codec, out)
        assert not out.exists()
    from sonotok.export.runtime import StreamRunner

    with pytest.raises(SonotokError, match="tiny-xcodec: XCodec is not causal .*cannot stream"):
        StreamRunner(model=codec)


def test_stream_latency_formula():
    from sonotok.export.runtime import algorithmic_latency_samples, summarize_times

    assert algorithmic_latency_samples(320, 320) == 320
    assert algorithmic_latency_samples(1, 320) == 320
    assert algorithmic_latency_samples(640, 320) == 640
    assert algorithmic_latency_samples(480, 320, 10) == 320 + 10 + 480 - 160
    s = summarize_times([0.001] * 19 + [0.01])
    assert s["max_ms"] == pytest.approx(10) and s["p95_ms"] == pytest.approx(1)


@pytest.mark.parametrize("kind", ["rvq", "grvq", "rvq_proj"])
def test_cached_norm_vq_gives_identical_codes(kind):
    """FrozenVQ keeps the squared codebook norms as a buffer: codes stay those of the library module."""
    from sonotok.quantizers.rvq import GroupedResidualVQ

    if kind == "rvq":
        q = ResidualVQ(32, 4, 1024, kmeans_init=False)
    elif kind == "rvq_proj":
        q = ResidualVQ(32, 3, 256, codebook_dim=8, kmeans_init=False)
    else:
        q = GroupedResidualVQ(32, groups=2, levels=2, codebook_size=256, kmeans_init=False)
    q.eval()
    frozen = q.to_frozen()
    assert frozen.codebook_sq.shape == (frozen.groups, frozen.levels, 1, frozen.codebook_size)
    z = torch.randn(3, 32, 50)
    with torch.no_grad():
        lib_codes = q(z).codes
    assert torch.equal(frozen.encode(z), lib_codes)
    assert torch.equal(torch.jit.script(frozen).encode(z), lib_codes)
