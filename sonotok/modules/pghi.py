"""Phase from an STFT magnitude alone: real-time phase-gradient heap integration (RTPGHI).

Průša, Balazs & Søndergaard, "A Noniterative Method for Reconstruction of Phase from STFT Magnitude"
(IEEE/ACM TASLP 2017), and Průša & Holighaus, "Phase Vocoder Done Right" (EUSIPCO 2017) for the
frame-by-frame (real-time) variant. For a Gaussian window the phase gradient of the STFT is a function of
the log-magnitude gradient:

* the phase advance per hop in bin ``m`` (time derivative) follows from the log-magnitude's slope across
  frequency, ``a M / gamma * d/dm log|c| + 2 pi a m / M``;
* the phase step from bin to bin (frequency derivative) follows from the log-magnitude's slope in time,
  ``-gamma / (a M) * d/dn log|c|``.

``gamma = C_g * L^2`` says how wide the window is (``C_g = 0.25645`` for Hann). Each frame's phase is
integrated from the previous frame's: bins are visited from the loudest down (a max-heap), a bin reached
in time from the previous frame takes the trapezoidal time integral, a bin reached from a louder
neighbour in the same frame the trapezoidal frequency integral; bins below ``tol`` of the frame pair's
peak get a random phase. The ``causal`` variant takes the time derivative of the log-magnitude with a
second-order backward difference (current and two previous frames: no look-ahead, the codec's latency
is kept); otherwise a centred difference (one frame of look-ahead).

Phases follow ``torch.stft`` / :class:`sonotok.modules.stft.ISTFTHead`: each frame's DFT is taken relative
to its first sample, so the window centre sits at ``n_fft / 2`` (the formulas above are for a window
centred at 0; the two conventions differ by ``pi m`` per bin, applied at the end).

Used by issue 15's phase-path lever (``bench/pghi.py``): it replaces a decoder's learned phase with one
integrated from the decoder's own magnitude.
"""

from __future__ import annotations

import heapq

import numpy as np

__all__ = ["HANN_GAMMA", "pghi_gradients", "rtpghi"]

#: ``C_g`` of the Hann window (Průša et al. 2017, Table I): ``gamma = C_g * window_length ** 2``.
HANN_GAMMA = 0.25645


def pghi_gradients(mag: np.ndarray, hop: int, n_fft: int, gamma: float, causal: bool = True):
    """Phase derivatives estimated from a magnitude ``mag [T, F]`` (frames first, ``F = n_fft // 2 + 1``).

    Returns ``(tgrad, fgrad, logs)``: the phase advance per hop of each bin ``[T, F]`` (radians, including
    the bin's own rotation ``2 pi hop m / n_fft``), the phase step to the next bin ``[T, F]`` (radians, for
    a window centred at 0) and the log-magnitude.
    """
    mag = np.asarray(mag, dtype=np.float64)
    if mag.ndim != 2 or mag.shape[1] != n_fft // 2 + 1:
        raise ValueError(f"mag must be [frames, {n_fft // 2 + 1}] for n_fft={n_fft}, got {list(mag.shape)}")
    a, m_ = float(hop), float(n_fft)
    logs = np.log(mag + np.finfo(np.float64).eps)
    # slope across frequency (centred; the band edges are symmetric, so their slope is 0)
    dlog_f = np.zeros_like(logs)
    dlog_f[:, 1:-1] = (logs[:, 2:] - logs[:, :-2]) / 2.0
    bins = np.arange(logs.shape[1], dtype=np.float64)
    tgrad = a * m_ / gamma * dlog_f + 2.0 * np.pi * a * bins / m_
    # slope in time
    dlog_t = np.zeros_like(logs)
    if causal:  # second-order backward difference: frames n, n-1, n-2 (the first frames repeat frame 0)
        p1 = np.concatenate([logs[:1], logs[:-1]], axis=0)
        p2 = np.concatenate([logs[:1], logs[:1], logs[:-2]], axis=0)[: len(logs)]
        dlog_t = (3.0 * logs - 4.0 * p1 + p2) / 2.0
    elif len(logs) > 2:
        dlog_t[1:-1] = (logs[2:] - logs[:-2]) / 2.0
    fgrad = -gamma / (a * m_) * dlog_t
    return tgrad, fgrad, logs


def rtpghi(mag: np.ndarray, hop: int, n_fft: int, gamma: float | None = None, tol: float = 1e-5,
           causal: bool = True, seed: int = 0) -> np.ndarray:
    """Phases ``[T, F]`` for the magnitude ``mag [T, F]`` by real-time phase-gradient heap integration.

    Args:
        mag: STFT magnitude, frames first (``F = n_fft // 2 + 1``).
        hop: hop in samples.
        n_fft: FFT size (= window length).
        gamma: window constant ``C_g * L^2``; default Hann's ``0.25645 * n_fft ** 2``.
        tol: bins below ``tol`` x the peak of the current and previous frames get a random phase.
        causal: backward time differences (no look-ahead) instead of centred ones (one frame).
        seed: seed of the random phases of the quiet bins.
    """
    gamma = HANN_GAMMA * n_fft**2 if gamma is None else float(gamma)
    tgrad, fgrad, logs = pghi_gradients(mag, hop, n_fft, gamma, causal=causal)
    n_frames, n_bins = logs.shape
    rng = np.random.default_rng(seed)
    log_tol = np.log(tol)
    phase = np.zeros((n_frames, n_bins))
    prev_phase = np.zeros(n_bins)
    prev_logs = np.full(n_bins, -np.inf)
    prev_tgrad = np.zeros(n_bins)
    for n in range(n_frames):
        cur = logs[n]
        peak = max(cur.max(), prev_logs.max())
        todo = cur > peak + log_tol
        ph = rng.uniform(-np.pi, np.pi, n_bins)  # quiet bins keep these
        if todo.any():
            # max-heap of (-log magnitude, frame flag, bin): flag 0 = previous frame (phase known), 1 = current
            heap = [(-prev_logs[m], 0, m) for m in np.flatnonzero(prev_logs > peak + log_tol)]
            heapq.heapify(heap)
            done = ~todo
            while not done.all():
                if not heap:  # nothing known to integrate from: seed the loudest remaining bin
                    m = int(np.flatnonzero(~done)[np.argmax(cur[~done])])
                    done[m] = True
                    ph[m] = 0.0
                    heapq.heappush(heap, (-cur[m], 1, m))
                    continue
                _, flag, m = heapq.heappop(heap)
                if flag == 0:  # known in the previous frame: integrate in time into this frame
                    if not done[m]:
                        ph[m] = prev_phase[m] + (prev_tgrad[m] + tgrad[n, m]) / 2.0
                        done[m] = True
                        heapq.heappush(heap, (-cur[m], 1, m))
                else:  # known in this frame: integrate in frequency to both neighbours
                    if m + 1 < n_bins and not done[m + 1]:
                        ph[m + 1] = ph[m] + (fgrad[n, m] + fgrad[n, m + 1]) / 2.0
                        done[m + 1] = True
                        heapq.heappush(heap, (-cur[m + 1], 1, m + 1))
                    if m - 1 >= 0 and not done[m - 1]:
                        ph[m - 1] = ph[m] - (fgrad[n, m] + fgrad[n, m - 1]) / 2.0
                        done[m - 1] = True
                        heapq.heappush(heap, (-cur[m - 1], 1, m - 1))
        phase[n] = ph
        prev_phase, prev_logs, prev_tgrad = ph, cur, tgrad[n]
    # window centred at 0 -> window starting at 0 (torch.stft's frame-relative DFT): -pi m per bin
    return phase - np.pi * np.arange(n_bins)[None, :]
