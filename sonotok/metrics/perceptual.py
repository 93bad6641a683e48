"""Learned perceptual metrics: DNSMOS (non-intrusive MOS) and speaker similarity.

Two checks a PESQ number cannot give, both from pretrained models bundled in their PyPI packages (no
download at run time):

- **DNSMOS P.835** (Reddy et al., "DNSMOS P.835: A Non-Intrusive Perceptual Objective Speech Quality
  Metric to Evaluate Noise Suppressors", ICASSP 2022), through ``speechmos``: the predicted signal
  (``dnsmos_sig``), background (``dnsmos_bak``) and overall (``dnsmos_ovrl``) MOS of the output alone,
  no reference. A model trained on a PESQ proxy loss can learn what PESQ rewards; DNSMOS was not
  trained on PESQ, so a gain that shows in both is not only the proxy's.
- **Speaker similarity** (``spk_sim``): cosine similarity of the d-vectors of the reference and the
  output (GE2E speaker encoder, Wan et al. 2018, through ``resemblyzer``): does the codec keep who is
  speaking. 1.0 is the same embedding; different speakers typically score 0.5-0.75.

:class:`PerceptualMetrics` loads both models once and is called per file like the other metrics of
:mod:`sonotok.evaluation` (``extra_metrics=``).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torchaudio
from torch import Tensor

__all__ = ["PerceptualMetrics", "PERCEPTUAL_KEYS"]

PERCEPTUAL_KEYS = ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "spk_sim")
_RATE = 16000


class PerceptualMetrics:
    """``metrics(ref [T], est [T], sample_rate) -> {dnsmos_ovrl, dnsmos_sig, dnsmos_bak, spk_sim}``.

    Args:
        threads: intra-op threads of the ONNX Runtime sessions (DNSMOS); the speaker encoder runs in
            torch and follows ``torch.set_num_threads``.
        dnsmos: compute the DNSMOS keys.
        speaker: compute ``spk_sim``.
    """

    def __init__(self, threads: int = 1, dnsmos: bool = True, speaker: bool = True):
        if not (dnsmos or speaker):
            raise ValueError("PerceptualMetrics: nothing to compute (dnsmos=False, speaker=False)")
        self._dnsmos = self._encoder = None
        if dnsmos:
            try:
                import onnxruntime as ort
                from speechmos import dnsmos as dm
            except ImportError as e:
                raise ImportError("DNSMOS needs the speechmos and onnxruntime packages "
                                  "(pip install speechmos onnxruntime)") from e
            import os

            here = os.path.join(os.path.dirname(os.path.abspath(dm.__file__)), "dnsmos_models")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
            # speechmos's DNSMOS scorer with our thread settings: its __init__ would open both ONNX sessions
            # with default (all-core) options, so build it without and open them once here
            model = dm.DNSMOS.__new__(dm.DNSMOS)
            model.primary_model_path = os.path.join(here, "sig_bak_ovr.onnx")
            model.onnx_sess, model.p808_onnx_sess = (
                ort.InferenceSession(os.path.join(here, name), opts, providers=["CPUExecutionProvider"])
                for name in ("sig_bak_ovr.onnx", "model_v8.onnx"))
            self._dnsmos = model
        if speaker:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # webrtcvad imports pkg_resources
                    from resemblyzer import VoiceEncoder, preprocess_wav
            except ImportError as e:
                raise ImportError("speaker similarity needs the resemblyzer package (pip install resemblyzer)") from e
            self._encoder = VoiceEncoder("cpu", verbose=False)
            self._preprocess = preprocess_wav

    def keys(self) -> tuple[str, ...]:
        """The keys this instance returns."""
        return (PERCEPTUAL_KEYS[:3] if self._dnsmos is not None else ()) + (("spk_sim",) if self._encoder else ())

    @staticmethod
    def _to16k(x: Tensor, sample_rate: int) -> np.ndarray:
        x = x.detach().float().cpu().reshape(-1)
        if sample_rate != _RATE:
            x = torchaudio.functional.resample(x, int(sample_rate), _RATE)
        return x.clamp(-1.0, 1.0).numpy().astype(np.float32)

    def _embed(self, x: np.ndarray) -> np.ndarray | None:
        if not np.any(np.abs(x) > 1e-4):  # silence: no voice to embed
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wav = self._preprocess(x, source_sr=_RATE)  # volume-normalised, long silences trimmed (VAD)
        if len(wav) < int(0.3 * _RATE):  # too little speech to embed
            return None
        with torch.no_grad():
            return self._encoder.embed_utterance(wav)

    def __call__(self, ref: Tensor, est: Tensor, sample_rate: int) -> dict:
        """Scores of ``est`` (DNSMOS: ``est`` alone; speaker similarity: against ``ref``). NaN where a
        model cannot score (silence, under 0.3 s of speech)."""
        out = {}
        e = self._to16k(est, sample_rate)
        if self._dnsmos is not None:
            if len(e) < _RATE // 4 or not np.any(np.abs(e) > 1e-4):
                out.update({k: float("nan") for k in ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak")})
            else:
                d = self._dnsmos(e, _RATE, False)
                out.update({"dnsmos_ovrl": float(d["ovrl_mos"]), "dnsmos_sig": float(d["sig_mos"]),
                            "dnsmos_bak": float(d["bak_mos"])})
        if self._encoder is not None:
            a, b = self._embed(self._to16k(ref, sample_rate)), self._embed(e)
            out["spk_sim"] = float(np.dot(a, b)) if a is not None and b is not None else float("nan")
        return out
