"""`AnyLeadNet`: the built-in classifier's network. One small single-lead CNN shared by every lead, RR-interval
features from a QRS detector all leads vote in, pooled over however many leads the record has (1 to 12 or more,
any names, any order).

Input float32 ``[n, leads, samples]`` in mV at 360 Hz (10 s: 3600 samples); output ``[n, classes]`` logits.

Per lead (`AnyLeadNet.normalise`): the mean is removed, a 4-sample average takes it to 90 Hz, and it is divided by
its robust amplitude (the median over 1-s blocks of the block's range, floored at `AMPLITUDE_FLOOR_MV`), so gain
conventions of other devices matter little and every lead votes with the same weight.

QRS detection (`AnyLeadNet.detect`, Pan & Tompkins in spirit, as `ecglens.qrs.detect_qrs`): each normalised lead
is band-passed to 5-15 Hz (FIR), differentiated and squared, divided by its mean, summed over leads, integrated
over 150 ms; local maxima at least 0.25 s apart reaching 20% of the median of the 2-s blocks' peaks are beats.

RR features (record level, relative to the window's median RR so that they hold at any heart rate): the median RR
(log seconds; left out, as a constant 0, with ``rate_feature=False``: the heart rate says more about who the
patient is than about what the beats are), beat coverage, the median and mean absolute successive RR difference,
the share of successive differences over 15% (the classic AF cue, robust to isolated ectopics through the
median), the RR coefficient of variation, the shortest and longest RR (prematurity, pauses) and the share of
premature beats (RR < 85%). Then local prematurity, each beat's RR against its neighbours' rather than the
window's median (a premature beat is short against the RR before it and the one after it, whatever the rate, and
a run of ectopic beats does not move the reference): the smallest RR / previous RR, the smallest RR / next RR, the
smallest RR / mean of the previous and next RR, the share of beats under 85% of that mean and the longest pause
after a beat (next RR minus RR, in median RRs).
Per beat, three tracks beside each lead's samples tell the CNN how premature the beat is, how long the pause
after it is and how premature it is against its neighbours, so morphology and timing of the same beat meet
(premature + normal QRS: supraventricular; wide QRS + compensatory pause: ventricular).

The CNN's time-pooled mean and max per lead are pooled again over leads (mean and max), so a finding on any single
lead can carry the output, and joined with the RR features in a two-layer head.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

AMPLITUDE_FLOOR_MV = 0.05
N_RR_FEATURES = 15  # computed by `AnyLeadNet.rhythm`; the first 10 without ``local_rhythm``
N_TRACKS = 3  # per-beat tracks of `AnyLeadNet.rhythm`; the first 2 without ``local_rhythm``
N_BASIC_RR_FEATURES = 10
N_BASIC_TRACKS = 2


def _bandpass_taps(fs: float, taps: int = 21) -> np.ndarray:
    from scipy.signal import firwin

    return firwin(taps, [5.0, min(15.0, 0.45 * fs)], pass_zero=False, fs=fs).astype(np.float32)


def _conv(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm1d(c_out), nn.ReLU()
    )


class AnyLeadNet(nn.Module):
    """See the module docstring.

    Parameters
    ----------
    n_classes : int
        Outputs (logits, independent findings). Default: 4.
    fs : float
        Input sampling rate in Hz. Default: 360.
    decimation : int
        Averaging factor before the CNN and the detector (360 Hz -> 90 Hz). Default: 4.
    widths : tuple of int
        Channels of the CNN's convolutions (each halving time but the last, from 90 Hz: 45, 22.5, ... Hz).
        Default: (8, 16, 24, 32, 32).
    hidden : int
        Width of the head's hidden layer. Default: 32.
    dropout : float
        Dropout before the head's layers. Default: 0.2.
    local_rhythm : bool
        Whether the network sees local prematurity: the 5 RR features and the per-beat track of each beat's RR
        against its neighbours' (module docstring). Default: False (the committed built-in's network).
    rate_feature : bool
        Whether the median RR (the heart rate) is an RR feature. Default: True.
    """

    def __init__(
        self,
        n_classes: int = 4,
        fs: float = 360.0,
        decimation: int = 4,
        widths: tuple[int, ...] = (8, 16, 24, 32, 32),
        hidden: int = 32,
        dropout: float = 0.2,
        local_rhythm: bool = False,
        rate_feature: bool = True,
    ):
        super().__init__()
        self.rate_feature = bool(rate_feature)
        self.local_rhythm = bool(local_rhythm)
        self.n_features = N_RR_FEATURES if local_rhythm else N_BASIC_RR_FEATURES
        self.n_tracks = N_TRACKS if local_rhythm else N_BASIC_TRACKS
        self.decimation = int(decimation)
        self.floor = AMPLITUDE_FLOOR_MV
        self.block = max(1, int(round(float(fs) / decimation)))  # 1 s
        self.fs_low = float(fs) / decimation
        taps = _bandpass_taps(self.fs_low)
        self.register_buffer("band", torch.from_numpy(taps).view(1, 1, -1))
        self.integrate = max(1, int(round(0.15 * self.fs_low)) | 1)  # odd: centred
        self.refractory = max(1, int(round(0.25 * self.fs_low)))
        layers = [_conv(1 + self.n_tracks, widths[0], 7, 2)]
        for k, (a, b) in enumerate(zip(widths, widths[1:])):
            last = k == len(widths) - 2
            layers.append(_conv(a, b, 3 if last else 5, 1 if last else 2))
        self.cnn = nn.Sequential(*layers)
        self.rr_norm = nn.BatchNorm1d(self.n_features)
        d = 4 * widths[-1] + self.n_features
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes)
        )

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``[n, leads, samples]`` mV -> ``[n, leads, samples // decimation]``, each lead mean 0, robust range 1."""
        n, leads, t = x.shape
        d = self.decimation
        m = t // d
        x = x - x.mean(dim=2, keepdim=True)
        # the decimating average as avg_pool1d computes it (summed in order, then divided), from strided views:
        # the same floats in about half the time
        phases = x[:, :, : m * d].reshape(n, leads, m, d)
        low = phases[:, :, :, 0]
        for k in range(1, d):
            low = low + phases[:, :, :, k]
        low = low / d
        blocks = max(1, m // self.block)
        cut = low[:, :, : blocks * self.block].reshape(n, leads, blocks, -1)
        ranges = cut.amax(dim=3) - cut.amin(dim=3)
        spread = ranges.kthvalue((blocks - 1) // 2 + 1, dim=2).values  # the lower median, as a sort would pick
        return low / spread.clamp(min=self.floor).unsqueeze(2)

    def detect(self, z: torch.Tensor) -> torch.Tensor:
        """Beat mask ``[n, t]`` (bool) of normalised leads ``z [n, leads, t]`` (module docstring)."""
        n, leads, t = z.shape
        band = self._bandpass(z)
        slope = torch.diff(band, dim=2, prepend=band[:, :, :1]) ** 2
        scale = slope.mean(dim=2, keepdim=True).clamp(min=1e-8)
        energy = (slope / scale).sum(dim=1, keepdim=True)
        w = self.integrate
        energy = nn.functional.avg_pool1d(energy, w, 1, w // 2, count_include_pad=False)[:, 0]
        span = 2 * self.block  # 2-s blocks: each holds a beat down to 30 bpm
        blocks = max(1, t // span)
        peaks = energy[:, : blocks * span].reshape(n, blocks, -1).amax(dim=2)
        top = peaks.kthvalue((blocks - 1) // 2 + 1, dim=1).values
        r = self.refractory
        local = nn.functional.max_pool1d(energy.unsqueeze(1), 2 * r + 1, 1, r)[:, 0]
        left = torch.cat([energy[:, :1] + 1.0, energy[:, :-1]], dim=1)
        return (energy >= local) & (energy > left) & (energy >= 0.2 * top.unsqueeze(1)) & (top.unsqueeze(1) > 0)

    def _bandpass(self, z: torch.Tensor) -> torch.Tensor:
        """The 5-15 Hz FIR of every lead of ``z [n, leads, t]`` (zero-padded, centred), as one in-place multiply-add
        per tap: the floats of ``conv1d`` (taps summed in order) in about half its time on one CPU thread."""
        n, leads, t = z.shape
        taps = self.band.reshape(-1)
        pad = taps.shape[0] // 2
        padded = nn.functional.pad(z, (pad, pad))
        band = padded[:, :, :t] * taps[0]
        for k in range(1, taps.shape[0]):
            band.addcmul_(padded[:, :, k : k + t], taps[k : k + 1])  # in place: no fresh buffer per tap
        return band

    def rhythm(self, beats: torch.Tensor, local_rhythm: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features [n, N_RR_FEATURES], tracks [n, N_TRACKS, t])`` from a beat mask ``[n, t]`` (module docstring);
        without ``local_rhythm`` only the first `N_BASIC_RR_FEATURES` and `N_BASIC_TRACKS` (the rest unneeded)."""
        n, t = beats.shape
        idx = torch.arange(t, device=beats.device).unsqueeze(0).expand(n, t)
        prev = torch.where(beats, idx, torch.full_like(idx, -1)).cummax(dim=1).values
        prev = torch.cat([torch.full_like(prev[:, :1], -1), prev[:, :-1]], dim=1)  # last beat strictly before
        has_rr = beats & (prev >= 0)
        rr = torch.where(has_rr, (idx - prev).float(), torch.zeros_like(idx, dtype=torch.float32))
        k = has_rr.sum(dim=1)
        big = float(10 * t)
        # medians from the smallest max(k) values only (a window holds a few dozen beats, not t)
        few = max(1, int(k.max()))
        ordered = torch.where(has_rr, rr, torch.full_like(rr, big)).topk(few, dim=1, largest=False).values
        med = ordered.gather(1, ((k - 1).clamp(min=0) // 2).unsqueeze(1))[:, 0]
        med = torch.where(k > 0, med, torch.full_like(med, self.fs_low))  # no RR: 60 bpm, features 0
        ratio = torch.where(has_rr, rr / med.unsqueeze(1), torch.zeros_like(rr))
        # successive differences: the RR of the previous beat, where it had one
        prev_c = prev.clamp(min=0)
        prev_ratio = ratio.gather(1, prev_c)
        pair = has_rr & has_rr.gather(1, prev_c) & (prev >= 0)
        d = torch.where(pair, (ratio - prev_ratio).abs(), torch.zeros_like(ratio))
        kp = pair.sum(dim=1)
        kf, kpf = k.float().clamp(min=1.0), kp.float().clamp(min=1.0)
        d_sorted = (
            torch.where(pair, d, torch.full_like(d, big)).topk(max(1, int(kp.max())), dim=1, largest=False).values
        )
        d_med = torch.where(
            kp > 0, d_sorted.gather(1, ((kp - 1).clamp(min=0) // 2).unsqueeze(1))[:, 0], torch.zeros_like(med)
        )
        mean_ratio = ratio.sum(dim=1) / kf
        var = (torch.where(has_rr, (ratio - mean_ratio.unsqueeze(1)) ** 2, torch.zeros_like(ratio))).sum(dim=1) / kf
        min_ratio = torch.where(
            k > 0, torch.where(has_rr, ratio, torch.full_like(ratio, big)).min(dim=1).values, torch.ones_like(med)
        )
        max_ratio = torch.where(k > 0, ratio.max(dim=1).values, torch.ones_like(med))
        some = (k > 0).float()
        med_s = med / self.fs_low
        # the RR after each beat (the next beat's RR in), and the beat's RR against its neighbours' (local
        # prematurity: a premature beat is short against the RR before it and the one after it, whatever the
        # window's median, so a run of ectopic beats or a slowly changing rate does not hide it)
        nxt = torch.where(beats, idx, torch.full_like(idx, t)).flip([1]).cummin(dim=1).values.flip([1])
        nxt = torch.cat([nxt[:, 1:], torch.full_like(nxt[:, :1], t)], dim=1)  # next beat strictly after
        has_next = beats & (nxt < t)
        out_ratio = torch.where(has_next, ratio.gather(1, nxt.clamp(max=t - 1)), torch.zeros_like(ratio))
        basic = [
            torch.log(med_s.clamp(0.2, 3.0)) * some * float(self.rate_feature),
            (k.float() + 1.0) * med / float(t),  # ~1 when the beats cover the window at a steady rate
            d_med,
            d.sum(dim=1) / kpf,
            ((d > 0.15) & pair).float().sum(dim=1) / kpf,
            var.sqrt(),
            (min_ratio - 1.0) * some,
            (max_ratio - 1.0) * some,
            ((ratio < 0.85) & has_rr).float().sum(dim=1) / kf,
            (k >= 3).float(),
        ]
        # per beat: how premature it is (RR in), how long the pause after it (RR out), and its RR against its
        # neighbours', as short pulses
        basic_tracks = [
            torch.where(has_rr, ratio - 1.0, torch.zeros_like(ratio)),
            torch.where(out_ratio > 0, out_ratio - 1.0, torch.zeros_like(ratio)),
        ]
        if not local_rhythm:
            return torch.stack(basic, dim=1), self._spread(torch.stack(basic_tracks, dim=1).clamp(-1.0, 2.0))
        both = has_rr & has_next
        n_nb = pair.float() + both.float()
        nb_mean = (torch.where(pair, prev_ratio, torch.zeros_like(ratio)) + out_ratio * both.float()) / n_nb.clamp(
            min=1.0
        )
        has_local = has_rr & (n_nb > 0)
        local = torch.where(has_local, ratio / nb_mean.clamp(min=1e-3), torch.ones_like(ratio))
        vs_prev = torch.where(pair, ratio / prev_ratio.clamp(min=1e-3), torch.ones_like(ratio))
        vs_next = torch.where(both, ratio / out_ratio.clamp(min=1e-3), torch.ones_like(ratio))
        pause = torch.where(both, out_ratio - ratio, torch.zeros_like(ratio))
        kl = has_local.sum(dim=1).float().clamp(min=1.0)
        features = torch.stack(
            basic
            + [
                (vs_prev.min(dim=1).values - 1.0).clamp(-1.0, 1.0),
                (vs_next.min(dim=1).values - 1.0).clamp(-1.0, 1.0),
                (local.min(dim=1).values - 1.0).clamp(-1.0, 1.0),
                ((local < 0.85) & has_local).float().sum(dim=1) / kl,
                pause.max(dim=1).values.clamp(0.0, 2.0),
            ],
            dim=1,
        )
        tracks = torch.stack(basic_tracks + [torch.where(has_local, local - 1.0, torch.zeros_like(ratio))], dim=1)
        tracks = self._spread(tracks.clamp(-1.0, 2.0))
        return features, tracks

    def _spread(self, tracks: torch.Tensor) -> torch.Tensor:
        """Widen each beat's one-sample value to a 9-sample pulse (100 ms at 90 Hz), keeping its sign."""
        return nn.functional.max_pool1d(tracks.clamp(min=0.0), 9, 1, 4) - nn.functional.max_pool1d(
            (-tracks).clamp(min=0.0), 9, 1, 4
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, leads, _ = x.shape
        z = self.normalise(x)
        t = z.shape[2]
        # the local-prematurity part only for a network that uses it
        features, tracks = self.rhythm(self.detect(z), self.local_rhythm)
        c = tracks.shape[1]
        inp = torch.cat(
            [z.reshape(n * leads, 1, t), tracks.unsqueeze(1).expand(n, leads, c, t).reshape(n * leads, c, t)], dim=1
        )
        h = self.cnn(inp)
        per_lead = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1).reshape(n, leads, -1)
        pooled = torch.cat([per_lead.mean(dim=1), per_lead.amax(dim=1), self.rr_norm(features)], dim=1)
        return self.head(pooled)
