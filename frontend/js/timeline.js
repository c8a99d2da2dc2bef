// Timeline strip above the ECG: the model's probability of each finding over the whole recording (one step per
// classifier window, from the analysis' `screening`), its threshold, the burden of each finding (share of windows
// where it is present), the windows that were explained, and the part of the record now on screen. Clicking a
// moment (or typing one) asks for that window to be explained. It draws only what the API returns.
import { esc } from "./api.js";

// Okabe & Ito (2008) colours, one per class in the card's order (normal classes drawn grey).
const CLASS_COLOURS = ["#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"];
const NORMAL_COLOUR = "#9a9a9a";
const HEIGHT_PX = 150;

export function isNormalClass(label) {
  const name = String(label).trim().toLowerCase();
  return ["n", "nsr", "norm", "normal", "sinus rhythm", "normal sinus rhythm"].includes(name) || name.startsWith("normal");
}

/** "m:ss" (or "h:mm:ss") for a time in seconds. */
export function clock(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return `${h ? `${h}:` : ""}${mm}:${String(r).padStart(2, "0")}`;
}

/** Seconds from "m:ss", "h:mm:ss" or a plain number of seconds; NaN when it is none of them. */
export function parseClock(text) {
  const t = String(text).trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
  const parts = t.split(":");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^\d+(\.\d+)?$/.test(p))) return NaN;
  return parts.map(Number).reduce((acc, p) => acc * 60 + p, 0);
}

/** Class colours: findings in palette order, normal classes grey. */
export function classColours(classes) {
  let k = 0;
  return Object.fromEntries(classes.map((c) => [c, isNormalClass(c) ? NORMAL_COLOUR : CLASS_COLOURS[k++ % CLASS_COLOURS.length]]));
}

/** The start of the screened window that holds time `t` (the last window starting at or before it). */
export function windowAt(screening, t) {
  const starts = screening.starts_s || [];
  let best = starts[0] ?? 0;
  for (const s of starts) if (s <= t + 1e-9) best = s;
  return best;
}

/**
 * A timeline bound to one container. `render(analysis)` draws the analysis' screening; `setView([a, b])` moves
 * the on-screen marker. `onPick(start_s)` is called with the window start of a clicked or typed moment;
 * `onShow(index)` when an explained window's button is pressed.
 */
export class Timeline {
  constructor(container, { duration, onPick, onShow } = {}) {
    this.el = container;
    this.duration = Number(duration) || 0;
    this.onPick = onPick || (() => {});
    this.onShow = onShow || (() => {});
    this.screening = null;
    this.view = null;
    this.shown = 0;
  }

  async render(analysis) {
    const sc = analysis?.screening;
    this.screening = sc || null;
    if (!sc || !Array.isArray(sc.starts_s) || !sc.starts_s.length) {
      this.el.innerHTML = "";
      this.el.hidden = true;
      return;
    }
    this.el.hidden = false;
    const windows = (analysis.windows || []).map((w, i) => ({ ...w, explanation: i === 0 ? analysis.explanation : w.explanation }));
    this.windows = windows;
    const coverage = analysis.annotations?.windows || [];
    const colours = classColours(sc.classes);
    const order = [...sc.classes].sort((a, b) => Number(isNormalClass(a)) - Number(isNormalClass(b)));
    this.el.innerHTML = `
      <h2 class="timeline-title">Whole recording <span class="muted small">· ${sc.starts_s.length} windows of
        ${Number(sc.window_s).toFixed(1)} s · ${sc.multilabel ? "a finding is present at or above its threshold (dashed)" : "a finding is present where it is the most probable class"}</span></h2>
      <ul class="burden" id="timeline-burden" aria-label="Burden: share of windows in which each finding is present">
        ${order.map((c) => `<li data-class="${esc(c)}"><span class="swatch" style="background:${colours[c]}"></span>
          ${esc(c)}: <strong>${(100 * (sc.burden?.[c] ?? 0)).toFixed(1)}%</strong></li>`).join("")}
      </ul>
      <div id="timeline-plot" class="timeline-plot" role="img"
           aria-label="Probability of each finding over the whole recording; click a moment to explain its window"></div>
      <form id="timeline-pick" class="row small" style="margin:.3rem 0">
        <label for="timeline-at">Explain the window at</label>
        <input id="timeline-at" name="at" type="text" inputmode="numeric" placeholder="m:ss" style="width:6rem">
        <button type="submit" class="btn btn-secondary btn-small">Explain</button>
        <span id="timeline-error" class="error" role="alert"></span>
      </form>
      ${windows.length ? `<div id="timeline-windows" class="timeline-windows" aria-label="Explained windows">
        <span class="muted small">Explained:</span>
        ${windows.map((w, i) => {
          // The explainer explains the window's diagnosis, which may be another finding than the one peaking there.
          const label = w.explanation?.diagnosis?.label;
          const other = label && label !== w.finding ? ` (explained: ${esc(label)})` : "";
          return `<button type="button" class="btn btn-quiet btn-small" data-window="${i}" aria-pressed="${i === this.shown}">
          ${esc(w.finding)} at ${esc(clock(w.start_s))}${other}</button>`;
        }).join("")}
      </div>` : ""}
      ${coverage.length ? `<ul id="timeline-coverage" class="small" aria-label="Annotated beats the critical segments cover">
        ${coverage.map((c) => `<li><strong>${esc(c.finding)} at ${esc(clock(c.start_s))}</strong>: ${esc(c.summary)}</li>`).join("")}
      </ul>` : ""}`;
    this.el.querySelector("#timeline-pick").addEventListener("submit", (e) => {
      e.preventDefault();
      const err = this.el.querySelector("#timeline-error");
      const t = parseClock(this.el.querySelector("#timeline-at").value);
      err.textContent = "";
      if (!Number.isFinite(t) || t < 0 || (this.duration && t >= this.duration)) {
        err.textContent = `Give a time between 0:00 and ${clock(this.duration)} (m:ss or seconds).`;
        return;
      }
      this.pick(windowAt(sc, t));
    });
    this.el.querySelector("#timeline-windows")?.addEventListener("click", (e) => {
      const b = e.target.closest("button[data-window]");
      if (!b) return;
      this.shown = Number(b.dataset.window);
      for (const x of this.el.querySelectorAll("button[data-window]")) x.setAttribute("aria-pressed", String(x === b));
      this.onShow(this.shown, this.windows[this.shown]);
      this.draw();
    });
    await this.draw();
  }

  /** Ask for the window at `start` to be explained; `onPick` answers false when it cannot be now. */
  pick(start) {
    const err = this.el.querySelector("#timeline-error");
    const ok = this.onPick(start);
    if (err) err.textContent = ok === false ? `The window at ${clock(start)} cannot be explained now: wait for the `
      + "running analysis to finish, or choose a model that fits this record." : "";
  }

  setView(range) {
    this.view = range ? [...range] : null;
    if (this.screening && window.Plotly && this.el.querySelector("#timeline-plot")?._fullLayout) {
      window.Plotly.relayout(this.el.querySelector("#timeline-plot"), { shapes: this.shapes() });
    }
  }

  shapes() {
    const sc = this.screening;
    const out = [];
    (this.windows || []).forEach((w, i) => {
      out.push({ type: "rect", xref: "x", yref: "paper", x0: w.start_s, x1: w.start_s + Number(sc.window_s), y0: 0, y1: 1,
        fillcolor: i === this.shown ? "rgba(0,0,0,0.16)" : "rgba(0,0,0,0.07)", line: { width: 0 } });
    });
    if (this.view) {
      out.push({ type: "rect", xref: "x", yref: "paper", x0: this.view[0], x1: this.view[1], y0: 0, y1: 1,
        fillcolor: "rgba(0,0,0,0)", line: { width: 1.5, color: "#1d2127" } });
    }
    return out;
  }

  async draw() {
    const sc = this.screening;
    const div = this.el.querySelector("#timeline-plot");
    if (!sc || !div || !window.Plotly) return;
    const colours = classColours(sc.classes);
    const w = Number(sc.window_s);
    const end = Math.max(this.duration, sc.starts_s[sc.starts_s.length - 1] + w);
    const data = [];
    sc.classes.forEach((c, j) => {
      // Each window's probability held over the window (steps), the last one to the record's end.
      const x = [...sc.starts_s, end];
      const y = [...sc.probabilities.map((row) => row[j]), sc.probabilities[sc.probabilities.length - 1][j]];
      data.push({ type: "scatter", mode: "lines", x, y, line: { shape: "hv", color: colours[c], width: isNormalClass(c) ? 1 : 1.8 },
        name: c, hovertemplate: `${esc(c)}: %{y:.2f}<extra></extra>`, meta: { kind: "probability", class: c } });
      const thr = sc.thresholds?.[c];
      if (sc.multilabel && thr != null && !isNormalClass(c)) {
        data.push({ type: "scatter", mode: "lines", x: [0, end], y: [thr, thr], hoverinfo: "skip", showlegend: false,
          line: { color: colours[c], width: 1, dash: "dash" }, meta: { kind: "threshold", class: c } });
      }
    });
    // One invisible bar per window: what the pointer clicks to explain that window.
    data.push({ type: "bar", x: sc.starts_s.map((s) => s + w / 2), y: sc.starts_s.map(() => 1), width: w,
      marker: { color: "rgba(0,0,0,0)" }, hovertemplate: "window %{customdata}<br>click to explain it<extra></extra>",
      customdata: sc.starts_s.map((s) => `${clock(s)}–${clock(s + w)}`), showlegend: false, meta: { kind: "windows" } });
    const layout = {
      height: HEIGHT_PX, margin: { l: 40, r: 30, t: 6, b: 28 }, showlegend: false, bargap: 0,
      xaxis: { range: [0, end], tickformat: "", ticksuffix: " s", zeroline: false, fixedrange: true },
      yaxis: { range: [0, 1.02], dtick: 0.5, fixedrange: true, title: { text: "p", standoff: 2 } },
      shapes: this.shapes(), hovermode: "x", paper_bgcolor: "#ffffff", plot_bgcolor: "#ffffff",
    };
    await window.Plotly.react(div, data, layout, { displaylogo: false, displayModeBar: false, responsive: true });
    if (!div.__timelineBound) {
      div.__timelineBound = true;
      div.on("plotly_click", (ev) => {
        const point = ev.points?.find((p) => p.data?.meta?.kind === "windows") ?? ev.points?.[0];
        if (!point) return;
        const half = Number(this.screening.window_s) / 2;
        const t = point.data?.meta?.kind === "windows" ? Number(point.x) - half : Number(point.x);
        this.pick(windowAt(this.screening, t));
      });
    }
  }
}
