"""What semantic distillation buys (issues 6, 18): baseline vs X-Codec vs first-codebook vs DM-Codec codecs.

Each design is built from the Hydra presets (``experiment=tiny_seanet`` baseline, ``experiment=xcodec_16k``,
``experiment=split_rvq_16k``, ``experiment=dmcodec_16k``: same SEANet sizes, 8 x 1024 codes at 50 Hz = 4 kbps),
trained with a plain loop for the same budget of optimizer steps (and/or minutes), then scored:

- acoustic quality on held-out speakers (corpus test split): PESQ-WB, STOI, mel distance;
- semantic probes, no hub needed: ridge regression from frozen code representations to the teacher's
  (Whisper tiny.en, final layer, standardised) features of the original audio, fitted on held-out-speaker
  files of the valid split and scored (R^2, cosine) on files of the test split. Representations: ``all``
  = the quantized latent decoded from all 8 codebooks, ``first`` = one-hot of the first codebook (1024-d),
  ``first_emb`` = the first level's embedding; the log-mel of the input is a reference;
- WER of Whisper tiny.en (greedy, CTranslate2's decoder on the same offline weights) on reconstructed English
  speech against the REAL transcripts: the corpus has no held-out English speaker (its splits are by language),
  so the English Asterisk prompts of its one English voice with transcripts (allison/en) are split in two by
  file: every second one is held out of training for every design (``--heldout-every``) and scored with the
  Asterisk transcript as reference (held-out utterances, seen voice). Harvard sentences synthesised with flite
  (voice slt, never seen, true text) are a second, unseen-voice WER when flite is installed.

DM-Codec designs (issue 18): ``dmcodec`` (LM-guided on the whole latent + SM-guided on RVQ-1), ``dmcodec_lm``
(LM only), ``dmcodec_sm`` (SM only on RVQ-1 of the same model: SpeechTokenizer-style first-codebook
distillation with DM-Codec's loss, the controlled comparison for the LM term).

    OMP_WAIT_POLICY=PASSIVE nice -n 5 .venv/bin/python bench/semantic.py --steps 400 --designs baseline
    (one process per design in parallel is fine: --out bench/results/semantic_<d>.json, then --merge)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import build, endless_batches, manifest_files, train_step  # noqa: E402

DESIGNS = {
    "baseline": ["experiment=tiny_seanet"],  # the same SEANet + RVQ 8 x 1024 without a teacher
    "xcodec": ["experiment=xcodec_16k"],
    "first_codebook": ["experiment=split_rvq_16k"],
    "dmcodec": ["experiment=dmcodec_16k"],  # LM (whole latent) + SM (RVQ-1)
    "dmcodec_lm": ["experiment=dmcodec_16k", "codec.sm_dim=0"],
    "dmcodec_sm": ["experiment=dmcodec_16k", "codec.lm_dim=0"],
}

# --backbone stft: the same three designs on the fast spectral backbone of `experiment=tiny` (causal STFT +
# ConvNeXt encoder, ConvNeXt + inverse-STFT decoder, compressed spectral losses) with the designs' RVQ
# 8 x 1024 (4 kbps): the SEANet designs are still at noise level after a small CPU budget, this one is not.
STFT_BACKBONE = [
    "encoder=stft_convnext", "decoder=vocos",
    "~encoder.n_filters", "~encoder.dilations", "~decoder.n_filters", "~decoder.dilations",
    "encoder.width=192", "encoder.num_blocks=3", "encoder.num_post_blocks=1",
    "decoder.width=192", "decoder.num_pre_blocks=1", "decoder.num_blocks=3",
    "loss=compressed", "loss.modules.mel.mag_weight=1.0",  # decoder_delay: derived from the decoder
    "optim.generator.lr=1.5e-3", "optim.generator.betas=[0.9,0.99]",
]
STFT_WEIGHTS = "rec/mel:15.0,rec/stft:1.0,rec/wave:0.0,rec/loudness:0.5,vq/commit:1.0"
STFT_DESIGNS = {
    "baseline": [f"loss.weights={{{STFT_WEIGHTS}}}"],
    "xcodec": [f"loss.weights={{{STFT_WEIGHTS},sem/distill:5.0}}"],
    "first_codebook": [f"loss.weights={{{STFT_WEIGHTS},sem/distill:10.0}}"],
    # = experiment=dmcodec_tiny (tests/semantic/test_dmcodec.py checks the two build the same codec)
    "dmcodec": [f"loss.weights={{{STFT_WEIGHTS},sem/lm:20.0,sem/sm:20.0}}"],
    "dmcodec_lm": [f"loss.weights={{{STFT_WEIGHTS},sem/lm:20.0}}"],
    "dmcodec_sm": [f"loss.weights={{{STFT_WEIGHTS},sem/sm:20.0}}"],
}


def design_overrides(name: str, backbone: str) -> list[str]:
    """Hydra overrides of design ``name`` on ``backbone`` (``seanet``: the presets as they are; ``stft``)."""
    if backbone == "seanet":
        return list(DESIGNS[name])
    if backbone == "stft":
        return [*DESIGNS[name], *STFT_BACKBONE, *STFT_DESIGNS[name]]
    raise ValueError(f"unknown backbone {backbone!r}: expected seanet or stft")


# Harvard sentences used for the WER test: the first 20 of sonotok.data.corpus.tts.SENTENCES.
N_HARVARD = 20
# Shortest file (seconds) taken from a manifest for scoring and probes.
MIN_S = 1.5


# ----------------------------------------------------------------------------- data
def synth_sentences(work: Path, n: int) -> list[tuple[str, str]]:
    """Harvard sentences spoken by flite's slt voice (16 kHz) -> [(wav path, text)]."""
    from sonotok.data.corpus.tts import SENTENCES

    work.mkdir(parents=True, exist_ok=True)
    out = []
    for i, text in enumerate(SENTENCES[:N_HARVARD][:n]):
        p = work / f"harvard_{i:02d}.wav"
        if not p.is_file():
            subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(p)], check=True)
        out.append((str(p), text))
    return out


# ----------------------------------------------------------------------------- whisper decoding
# the ASR and the word error count live in the package (the DM-Codec transcripts use the same decoder)
from sonotok.semantic.transcripts import WhisperASR, word_errors  # noqa: E402


def heldout_split(corpus: Path, work: Path, every: int, speaker: str = "allison", language: str = "en",
                  languages: list[str] | None = None) -> tuple[Path, list[tuple[str, str]]]:
    """Hold every ``every``-th transcribed utterance of ``speaker``/``language`` (by path) out of the training
    manifest (and keep only ``languages`` when given): returns ``(training manifest without them,
    [(wav path, real transcript)] of them)``."""
    rows = [json.loads(line) for line in (corpus / "train.jsonl").read_text().splitlines() if line.strip()]
    if languages:
        rows = [r for r in rows if r.get("language") in languages]
    cand = sorted((r for r in rows if r.get("speaker") == speaker and r.get("language") == language and r.get("text")),
                  key=lambda r: r["path"])
    held = {r["path"] for r in cand[1::every]} if every > 0 else set()
    work.mkdir(parents=True, exist_ok=True)
    tag = "-".join(languages) if languages else "all"
    out = work / f"train_{tag}_minus_{speaker}_{language}_{every}.jsonl"
    keep = []
    for r in rows:
        if r["path"] in held:
            continue
        r = dict(r)
        r["path"] = str((corpus / r["path"]).resolve())
        keep.append(json.dumps(r))
    out.write_text("\n".join(keep) + "\n")
    pairs = [(str((corpus / r["path"]).resolve()), r["text"]) for r in cand if r["path"] in held]
    return out, pairs


def pick_utterances(pairs: list[tuple[str, str]], n: int, min_s: float = MIN_S, max_s: float = 8.0):
    """``n`` of ``pairs`` of ``min_s``-``max_s`` seconds with at least 3 words, spread over the list."""
    import soundfile as sf

    ok = [(p, t) for p, t in pairs if min_s <= sf.info(p).duration <= max_s and len(t.split()) >= 3]
    step = max(1, len(ok) // max(n, 1))
    return ok[::step][:n]


# ----------------------------------------------------------------------------- training
def train(name: str, module, dm, steps: int, minutes: float) -> dict:
    codec = module.codec
    (opt,), (sched,) = module.configure_optimizers()
    loader = endless_batches(dm)
    codec.train()
    train_s, step = 0.0, 0
    while step < steps and train_s < minutes * 60:
        batch = next(loader)
        t0 = time.perf_counter()
        if hasattr(module, "use_batch"):
            module.use_batch(batch)  # the transcripts of a DM-Codec batch reach the semantic hook
        losses, total = train_step(module, codec, opt, sched, batch)  # the semantic hook adds sem/*
        step += 1
        train_s += time.perf_counter() - t0
        if step % 25 == 0:
            sem = " ".join(f"{k} {float(v):.3f}" for k, v in losses.items() if k.startswith("sem/"))
            print(f"[{name}] step {step} loss {float(total):.3f} {sem} {step / train_s:.2f} steps/s", flush=True)
    codec.eval()
    return {"steps": step, "train_minutes": train_s / 60, "steps_per_s": step / max(train_s, 1e-9)}


# ----------------------------------------------------------------------------- probes
@torch.no_grad()
def representations(codec, files: list[str], teacher) -> dict[str, list[torch.Tensor]]:
    from sonotok.data.audio import load_audio
    from sonotok.semantic.whisper import WhisperLogMel

    mel_fe = WhisperLogMel(80)
    reps: dict[str, list[torch.Tensor]] = {"target": [], "all": [], "first": [], "first_emb": [], "mel": []}
    for f in files:
        wav = load_audio(f, codec.sample_rate)[None]  # [1, 1, T]
        codes = codec.encode(wav)  # [1, K, F]
        n = codes.shape[-1]
        reps["target"].append(teacher(wav, sample_rate=codec.sample_rate, num_frames=n)[0].T)
        reps["all"].append(codec.quantizer.decode(codes)[0].T)
        reps["first"].append(codes[0, 0])
        reps["first_emb"].append(codec.quantizer.decode(codes[:, :1])[0].T)
        mel = mel_fe(codec.pad_to_frames(wav)[:, 0])
        from sonotok.semantic.teacher import resample_frames

        reps["mel"].append(resample_frames(mel, n)[0].T)
    return reps


def probe_scores(codec, train_files, test_files, teacher) -> dict:
    from sonotok.semantic.probe import linear_probe, one_hot_codes

    tr = {k: torch.cat(v) for k, v in representations(codec, train_files, teacher).items()}
    te = {k: torch.cat(v) for k, v in representations(codec, test_files, teacher).items()}
    out = {}
    for k in ("all", "first_emb", "first", "mel"):
        xtr, xte = tr[k], te[k]
        if k == "first":
            xtr, xte = one_hot_codes(xtr, codec.codebook_size), one_hot_codes(xte, codec.codebook_size)
        out[k] = linear_probe(xtr, tr["target"], xte, te["target"], alpha=10.0)
    return out


def wer(codec, sentences, asr) -> dict:
    """Whisper's WER on ``codec``'s reconstructions of ``sentences`` ``[(wav path, reference text)]`` (and on the
    original audio), with up to 3 examples."""
    from sonotok.data.audio import load_audio

    errs = n = errs_orig = 0
    examples = []
    for path, text in sentences:
        wav = load_audio(path, codec.sample_rate)[None]
        with torch.no_grad():
            rec = codec.decode(codec.encode(wav), length=wav.shape[-1])[0, 0].clamp(-1, 1)
        hyp = asr.transcribe(rec)
        e, m = word_errors(text, hyp)
        eo, _ = word_errors(text, asr.transcribe(wav[0, 0]))
        errs, n, errs_orig = errs + e, n + m, errs_orig + eo
        if len(examples) < 3:
            examples.append({"ref": text, "hyp": hyp})
    return {"wer": errs / n, "wer_original_audio": errs_orig / n, "words": n, "examples": examples}


def acoustic(codec, files) -> dict:
    from sonotok.evaluation.codec import evaluate

    with torch.no_grad():
        s = evaluate(codec, files, verbose=False)["summary"]
    return {k: float(s[k]) for k in ("pesq_wb", "stoi", "mel_distance", "si_sdr") if k in s}


# ----------------------------------------------------------------------------- main
def run(name: str, args) -> dict:
    from sonotok.semantic.whisper import WhisperTeacher

    torch.manual_seed(0)
    corpus = Path(args.corpus)
    langs = args.train_languages.split(",") if args.train_languages else None
    train_manifest, heldout = heldout_split(corpus, Path(args.work), args.heldout_every, languages=langs)
    overrides = design_overrides(name, args.backbone) + [f"data.train={train_manifest}",
                                                         f"data.valid={corpus.resolve() / 'valid.jsonl'}"]
    cfg, module, dm = build(overrides + [f"threads={args.threads}"] + list(args.override or []))
    codec = module.codec
    info = {"backbone": args.backbone, "overrides": overrides + list(args.override or []),
            "params": sum(p.numel() for p in codec.parameters()), "kbps": codec.bitrate() / 1000}
    frac = getattr(dm.train_dataset, "text_fraction", None)
    if frac is not None:
        info["train_text_fraction"] = frac
    info.update(train(name, module, dm, args.steps, args.minutes))
    eval_files = manifest_files(corpus / "test.jsonl", args.per_speaker, min_s=MIN_S)
    t0 = time.perf_counter()
    info["acoustic"] = acoustic(codec, eval_files)
    teacher = WhisperTeacher(normalize=True)
    info["probe"] = probe_scores(codec, manifest_files(corpus / "valid.jsonl", args.probe_files, min_s=MIN_S),
                                 manifest_files(corpus / "test.jsonl", args.probe_files, min_s=MIN_S), teacher)
    try:
        asr = WhisperASR()
    except ImportError as e:
        asr = None
        info["asr"] = {"skipped": f"{type(e).__name__}: {e}"}
    if asr is not None:
        utts = pick_utterances(heldout, args.wer_utterances)
        info["asr"] = wer(codec, utts, asr)
        info["asr"]["reference"] = ("real Asterisk transcripts of allison/en prompts held out of training "
                                    f"(every {args.heldout_every}nd file)")
        try:
            info["asr_flite"] = wer(codec, synth_sentences(Path(args.work) / "harvard", args.sentences), asr)
        except (FileNotFoundError, subprocess.CalledProcessError) as e:
            info["asr_flite"] = {"skipped": f"{type(e).__name__}: {e}"}
    info["eval_minutes"] = (time.perf_counter() - t0) / 60
    print(f"[{name}] {json.dumps({k: info[k] for k in ('acoustic', 'probe')})}", flush=True)
    print(f"[{name}] WER {info['asr'].get('wer')} (original audio {info['asr'].get('wer_original_audio')})", flush=True)
    return info


def print_table(res: dict) -> None:
    print(f"{'design':15s} {'steps':>5s} {'PESQ':>5s} {'STOI':>5s} {'R2 all':>7s} {'R2 1st':>7s} {'R2 1st-emb':>10s} "
          f"{'WER':>6s} {'WER orig':>8s} {'WER flite':>9s}")
    for name, r in res["designs"].items():
        p = r["probe"]
        a, fl = r.get("asr", {}), r.get("asr_flite", {})
        print(f"{name:15s} {r['steps']:5d} {r['acoustic']['pesq_wb']:5.2f} {r['acoustic']['stoi']:5.3f} "
              f"{p['all']['r2']:7.3f} {p['first']['r2']:7.3f} {p['first_emb']['r2']:10.3f} "
              f"{a.get('wer', float('nan')):6.3f} {a.get('wer_original_audio', float('nan')):8.3f} "
              f"{fl.get('wer', float('nan')):9.3f}")
    any_r = next(iter(res["designs"].values()))
    print(f"reference: log-mel of the input -> teacher R2 {any_r['probe']['mel']['r2']:.3f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--designs", default="baseline,xcodec,first_codebook,dmcodec,dmcodec_lm,dmcodec_sm")
    p.add_argument("--backbone", default="seanet", choices=["seanet", "stft"],
                   help="seanet: the presets as they are; stft: the same designs on tiny's spectral backbone")
    p.add_argument("--steps", type=int, default=400, help="optimizer steps per design (the shared budget)")
    p.add_argument("--minutes", type=float, default=1e9, help="also stop after this much training time")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--per-speaker", type=int, default=6, help="acoustic eval files per test speaker")
    p.add_argument("--probe-files", type=int, default=25, help="probe files per speaker (valid: fit, test: score)")
    p.add_argument("--sentences", type=int, default=20, help="flite Harvard sentences for the unseen-voice WER")
    p.add_argument("--wer-utterances", type=int, default=40, help="held-out allison/en prompts scored for WER")
    p.add_argument("--heldout-every", type=int, default=2,
                   help="hold every n-th transcribed allison/en prompt out of training (the WER set)")
    p.add_argument("--train-languages", default=None,
                   help="comma-separated languages of the training manifest (default: the whole train split)")
    p.add_argument("--override", nargs="*", default=None, help="extra Hydra overrides for every design")
    p.add_argument("--corpus", default=os.environ.get("SONOTOK_CORPUS", str(ROOT / "data/corpus")))
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "sonotok_semantic_bench"))
    p.add_argument("--out", default=None, help="result file (default bench/results/semantic_<backbone>.json)")
    p.add_argument("--merge", nargs="+", default=None, help="merge per-design result files into --out")
    args = p.parse_args(argv)
    out = Path(args.out or ROOT / f"bench/results/semantic_{args.backbone}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.merge:
        merged: dict = {"designs": {}}
        for f in args.merge:
            r = json.loads(Path(f).read_text())
            merged["designs"].update(r.pop("designs"))
            merged.update({k: v for k, v in r.items() if k != "designs"})
        out.write_text(json.dumps(merged, indent=1))
        print_table(merged)
        return 0
    torch.set_num_threads(args.threads)
    res = {"budget_steps": args.steps, "budget_minutes": args.minutes, "threads": args.threads,
           "command": " ".join(sys.argv), "corpus": args.corpus, "train_languages": args.train_languages,
           "note": "first_codebook = split RVQ (Mimi); dmcodec* = experiment=dmcodec_16k (RVQ, MiniLM text teacher "
                   "+ Whisper tiny.en speech teacher); probe fit on valid, scored on test (held-out speakers); "
                   "WER: greedy Whisper tiny.en via CTranslate2 against real Asterisk transcripts of allison/en "
                   "prompts held out of training (seen voice, unseen utterances); WER flite: Harvard sentences "
                   "by flite slt (unseen voice, true text)",
           "designs": {}}
    for name in args.designs.split(","):
        res["designs"][name] = run(name, args)
        out.write_text(json.dumps(res, indent=1))
    print_table(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
