"""`sonotok eval --html`: the listening page renders in headless Chromium with every player and image loaded."""

import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tokenizer"))
from tok_helpers import build_codec  # noqa: E402

from sonotok.evaluation.listening import write_listening_page  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# A page of the test (not of the product): loads the listening page in a same-origin iframe and writes
# into its own DOM how many images decoded and how many players read their audio's metadata.
CHECK = """<!doctype html><html><body><iframe id="f" src="index.html" width="1200" height="800"></iframe>
<pre id="out">pending</pre><script>
const f = document.getElementById('f');
f.onload = async () => {
  const d = f.contentDocument, imgs = [...d.images], auds = [...d.querySelectorAll('audio')];
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  const ctx = new OfflineAudioContext(1, 1, 16000);
  const decoded = await Promise.all(auds.map(async a => {
    try {
      const buf = await ctx.decodeAudioData(await (await fetch(a.src)).arrayBuffer());
      return buf.duration > 0;
    } catch (e) { return false; }
  }));
  const ok_img = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.getElementById('out').textContent = JSON.stringify(
    {imgs: imgs.length, ok_img, auds: auds.length, ok_aud: decoded.filter(Boolean).length});
};
</script></body></html>"""


def _speechlike(seconds, sr, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(150 + 20 * np.sin(2 * np.pi * t)) / sr
    env = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 2
    return (0.2 * sum(np.sin(k * phase) / k for k in range(1, 10)) * env + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture
def page(tmp_path):
    codec, _ = build_codec("fsq"), None
    codec = codec.eval()
    files = []
    for i in range(2):
        p = tmp_path / f"in{i}.wav"
        sf.write(p, _speechlike(1.5, 24000, i), 24000)  # a foreign rate: resampled to the model's
        files.append(p)
    classic = ["opus:6"] if shutil.which("opusenc") else []
    index = write_listening_page(tmp_path / "page", files, {"tiny": codec}, classic=classic)
    return index, classic


def test_page_files_and_metrics(page):
    index, classic = page
    root = index.parent
    meta = json.loads((root / "metrics.json").read_text())
    assert meta["systems"] == ["original", "tiny", *(["Opus 6 kbps"] if classic else [])]
    for row in meta["files"]:
        assert row["systems"]["original"]["metrics"] is None
        for name, s in row["systems"].items():
            assert (root / s["audio"]).is_file() and (root / s["image"]).is_file()
            info = sf.info(root / s["audio"])
            assert info.samplerate == meta["sample_rate"] and abs(info.duration - row["duration"]) < 1e-3
            if name != "original":
                assert set(s["metrics"]) == {"pesq_wb", "stoi", "si_sdr", "mel_distance"}
    text = index.read_text()
    assert text.count("<audio") == len(meta["files"]) * len(meta["systems"])
    assert "<script" not in text and "http" not in text  # static, relative links only


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed")
def test_page_renders_in_headless_chromium_with_players_and_images_loaded(page):
    index, _ = page
    root = index.parent
    (root / "check.html").write_text(CHECK)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = lambda *a, **k: Quiet(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/check.html"
        # virtual time runs out before real decoding on a loaded machine: the page still says "pending" then,
        # so try again with a larger budget (a page that never loads keeps failing)
        for budget in (30000, 120000, 480000):
            out = subprocess.run(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={root.parent / 'chrome-profile'}",
                 f"--virtual-time-budget={budget}", "--dump-dom", url],
                capture_output=True, text=True, timeout=240)
            dom = out.stdout
            start = dom.index('<pre id="out">') + len('<pre id="out">')
            raw = dom[start: dom.index("</pre>", start)].replace("&quot;", '"')
            if raw.strip() != "pending":
                break
    finally:
        server.shutdown()
    assert raw.strip() != "pending", "the check page's scripts never finished (images/audio never loaded)"
    report = json.loads(raw)
    assert report["imgs"] > 0 and report["ok_img"] == report["imgs"], report
    assert report["auds"] > 0 and report["ok_aud"] == report["auds"], report


@pytest.mark.skipif(shutil.which("opusenc") is None, reason="opus-tools not installed (make test installs it)")
def test_cli_eval_classic_section_and_html(tmp_path, capsys):
    from tok_helpers import build_tiny

    from sonotok.cli import main
    from sonotok.model_io import save_model

    codec, cfg = build_tiny()
    model_dir = save_model(codec, tmp_path / "tiny", cfg)
    files = []
    for i in range(2):
        p = tmp_path / f"in{i}.wav"
        sf.write(p, _speechlike(1.5, 24000, i), 24000)
        files.append(str(p))
    rc = main(["eval", "--model", str(model_dir), "--data", *files, "--classic", "opus:6", "--classic", "codec2:3200",
               "--html", str(tmp_path / "page"), "--json", "--device", "cpu"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["classic"]) == {"Opus 6 kbps", "Codec2 3200"}
    for r in res["classic"].values():
        assert [f["path"] for f in r["files"]] == files
    assert abs(res["classic"]["Codec2 3200"]["summary"]["bitrate_kbps"] - 3.2) < 0.2
    meta = json.loads((tmp_path / "page" / "metrics.json").read_text())
    assert meta["systems"] == ["original", "sonotok tiny", "Opus 6 kbps", "Codec2 3200"]
    assert meta["sample_rate"] == codec.sample_rate
    assert res["cost"]["parameters"] == sum(p.numel() for p in codec.parameters())
    assert res["cost"]["encoder_mflops_per_s"] > 0 and res["cost"]["decoder_mflops_per_s"] > 0
