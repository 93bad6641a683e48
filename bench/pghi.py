"""Issue 15's phase-path lever: the decoder's own phase against real-time phase-gradient heap integration.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/pghi.py --model default --data data/corpus/test.jsonl

For each held-out file (the 54 of ``bench/classic.py``: 3 per test speaker, 2-8 s) the codec encodes and
decodes; the inverse-STFT head's predicted spectrum is caught on its way to the overlap-add. Rows, all
through the head's own synthesis (window, overlap-add normalisation, alignment):

* ``decoded``: the predicted magnitude with the predicted phase (= ``codec.decode``, checked);
* ``pred mag + RTPGHI causal`` / ``+ RTPGHI 1-frame look-ahead``: the predicted magnitude with a phase
  integrated from it (:func:`sonotok.modules.pghi.rtpghi`), no learned phase at all;
* ``true mag + RTPGHI causal`` / ``look-ahead``: the same integration from the input's own magnitude
  (the head's 640 / 160 Hann framing): what the algorithm can do with a perfect magnitude at this
  redundancy (n_fft / hop = 4);
* ``pred mag + true phase`` / ``true mag + pred phase``: the swaps of ``bench/results/levers.md``, here in
  the head's framing.

PESQ-WB and STOI per row, averaged over the files, with per-file wins against ``decoded``. Writes
``bench/results/pghi.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", default="data/corpus/test.jsonl")
    ap.add_argument("--per-speaker", type=int, default=3)
    ap.add_argument("--num-codebooks", type=int, default=None)
    ap.add_argument("--tol", type=float, default=1e-5, help="RTPGHI: relative magnitude below which phase is random")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="only the first N files (quick look)")
    ap.add_argument("--out", default="bench/results/pghi.json")
    args = ap.parse_args(argv)

    import numpy as np
    import soundfile as sf
    import torch
    import torchaudio

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import manifest_files

    from sonotok.metrics.quality import pesq_wb, stoi
    from sonotok.model_io import load_model
    from sonotok.modules.pghi import rtpghi
    from sonotok.modules.stft import CausalSTFT, ISTFTHead

    torch.set_num_threads(args.threads)
    codec = load_model(args.model).eval()
    heads = [m for m in codec.decoder.modules() if isinstance(m, ISTFTHead)]
    if len(heads) != 1:
        print(f"error: {args.model} has {len(heads)} inverse-STFT heads; this bench needs exactly one", file=sys.stderr)
        return 1
    head = heads[0]
    n_fft, hop, sr = head.n_fft, head.hop_length, codec.sample_rate
    caught = {}
    head.register_forward_hook(lambda mod, inp, out: caught.__setitem__("x", inp[0]))

    def synth(spec: torch.Tensor, n: int) -> torch.Tensor:
        frames = torch.fft.irfft(spec, n=n_fft, dim=-1) * head.window  # [1, T, n_fft]
        return head._overlap_add(frames)[..., head.delay:][0, 0, :n]

    # the input in the head's framing (frame t = samples [(t+1) hop - n_fft, (t+1) hop)): the encoder's STFT
    stft = CausalSTFT(n_fft, hop, window="hann", features="complex")

    def analyse(x: torch.Tensor, frames: int) -> torch.Tensor:
        s = stft(torch.nn.functional.pad(x, (0, frames * hop - x.shape[-1]))[None, None])  # [1, 2F, frames]
        return torch.complex(s[:, : head.n_bins], s[:, head.n_bins:]).transpose(1, 2)  # [1, T, F]

    def with_phase(mag: torch.Tensor, phase) -> torch.Tensor:
        return torch.polar(mag.double(), torch.as_tensor(phase, dtype=torch.float64)).to(torch.complex64)

    files = manifest_files(Path(args.data), args.per_speaker)[: args.limit]
    print(f"{len(files)} held-out files from {args.data}", file=sys.stderr)
    rows = ["decoded", "pred mag + RTPGHI causal", "pred mag + RTPGHI look-ahead", "true mag + RTPGHI causal",
            "true mag + RTPGHI look-ahead", "pred mag + true phase", "true mag + pred phase"]
    per_file = {r: [] for r in rows}
    max_dev, t_pghi, n_frames_total = 0.0, 0.0, 0
    t0 = time.perf_counter()
    for i, path in enumerate(files):
        wav, fs = sf.read(path, dtype="float32", always_2d=True)
        x = torch.from_numpy(wav.mean(1))
        if fs != sr:
            x = torchaudio.functional.resample(x, fs, sr)
        n = x.shape[-1]
        with torch.no_grad():
            codes = codec.encode(x[None, None], num_codebooks=args.num_codebooks)
            decoded = codec.decode(codes, length=n)[0, 0]
            re, im = head.spectrum(caught["x"])
            pred = torch.complex(re.float(), im.float())[:1]  # [1, T, F]
        frames = pred.shape[1]
        true = analyse(x, frames)
        pm, tm = pred.abs(), true.abs()
        own = synth(pred, n)
        max_dev = max(max_dev, float((own - decoded).abs().max()))
        t1 = time.perf_counter()
        ph_pc = rtpghi(pm[0].numpy(), hop, n_fft, tol=args.tol, causal=True)
        t_pghi += time.perf_counter() - t1
        n_frames_total += frames
        outs = {"decoded": own, "pred mag + RTPGHI causal": synth(with_phase(pm, ph_pc[None]), n)}
        for name, mag, causal in (("pred mag + RTPGHI look-ahead", pm, False), ("true mag + RTPGHI causal", tm, True),
                                  ("true mag + RTPGHI look-ahead", tm, False)):
            outs[name] = synth(with_phase(mag, rtpghi(mag[0].numpy(), hop, n_fft, tol=args.tol, causal=causal)[None]), n)
        outs.update({
            "pred mag + true phase": synth(with_phase(pm, true.angle()), n),
            "true mag + pred phase": synth(with_phase(tm, pred.angle()), n),
        })
        for r, y in outs.items():
            per_file[r].append({"path": path, "pesq_wb": float(pesq_wb(x[None], y[None], sr)),
                                "stoi": float(stoi(x[None], y[None], sr))})
        print(f"[{i + 1}/{len(files)}] {Path(path).name}: decoded {per_file['decoded'][-1]['pesq_wb']:.2f}, "
              f"RTPGHI causal {per_file['pred mag + RTPGHI causal'][-1]['pesq_wb']:.2f}", file=sys.stderr)
    if max_dev > 1e-4:
        print(f"error: the caught spectrum does not reproduce codec.decode (max deviation {max_dev:.2e})",
              file=sys.stderr)
        return 1
    summary = {}
    for r in rows:
        pf = per_file[r]
        summary[r] = {"pesq_wb": float(np.mean([f["pesq_wb"] for f in pf])), "stoi": float(np.mean([f["stoi"] for f in pf])),
                      "wins_vs_decoded": {m: int(sum(a[m] >= b[m] for a, b in zip(pf, per_file["decoded"])))
                                          for m in ("pesq_wb", "stoi")}}
    lines = [f"| {args.model}{'@' + str(args.num_codebooks) if args.num_codebooks else ''} | PESQ-WB | STOI | "
             f"files >= decoded (PESQ / STOI, of {len(files)}) |", "|---|---|---|---|"]
    lines += [f"| {r} | {s['pesq_wb']:.2f} | {s['stoi']:.3f} | {s['wins_vs_decoded']['pesq_wb']} / "
              f"{s['wins_vs_decoded']['stoi']} |" for r, s in summary.items()]
    rt = n_frames_total * hop / sr / max(t_pghi, 1e-9)
    lines += ["", f"RTPGHI (NumPy + heapq, causal): {1000 * t_pghi / max(n_frames_total, 1):.2f} ms per "
              f"{1000 * hop / sr:.0f} ms frame ({rt:.1f}x real time, 1 thread)"]
    print("\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(["bench/pghi.py", *sys.argv[1:]]), "model": args.model,
                               "num_codebooks": args.num_codebooks, "n_fft": n_fft, "hop": hop, "tol": args.tol,
                               "summary": summary, "per_file": per_file, "pghi_x_realtime": rt,
                               "seconds": time.perf_counter() - t0, "machine": platform.platform(),
                               "load": os.getloadavg()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
