// Record view: the ECG on paper grid with plotly, linked zoom and pan across leads, critical segments shaded,
// and the minimal adversarial signal (or its noise alone) overlaid where the search put it. The grid stays square
// at every zoom (the rows grow with the time scale), each row is as tall as its trace (no complex is cut), and a
// 1-mV calibration pulse starts every row. It only draws what the API returns:
// the decimated signal from /records/{id}/signal (re-fetched at full resolution when zoomed in) and the
// analysis JSON by its field names (segments: lead, start_s, end_s, score, distortion).
import { api, esc } from "./api.js";

// Paper: 25 mm/s and 10 mm/mV at 100% zoom, on a 96-dpi CSS pixel (1 in = 25.4 mm).
export const PX_PER_MM = 96 / 25.4;
export const SPEED_MM_S = 25;
export const GAIN_MM_MV = 10;
const MAJOR_S = 0.2, MINOR_S = 0.04, MAJOR_MV = 0.5, MINOR_MV = 0.1;
const PAPER = { minor: "#f7d4d4", major: "#e59a9a", trace: "#111111" };

// Okabe & Ito (2008) colour-blind-safe palette, one colour per distortion type.
export const DISTORTION_COLOURS = {
  baseline_wander: "#E69F00",   // orange
  powerline: "#56B4E9",         // sky blue
  muscle: "#009E73",            // bluish green
  electrode_motion: "#CC79A7",  // reddish purple
  gaussian: "#0072B2",          // blue
  dropout: "#F0E442",           // yellow: found by the localisation's dropout probes, not by a noise kind
  none: "#505050",              // dark grey: a segment that mattered without a distortion type of its own
};
// Spare colours for distortion kinds without one; not the overlays' colours (below).
const SPARE_COLOURS = ["#000000", "#999933"];
// The kinds themselves come from GET /distortions (ecglens.distortions.KINDS); these are their colours and labels.
export const DISTORTION_LABELS = {
  baseline_wander: "Baseline wander",
  powerline: "Powerline interference",
  muscle: "Muscle artifact",
  electrode_motion: "Electrode motion",
  gaussian: "Gaussian noise",
  dropout: "Signal dropout (sensitivity)",
  none: "no distortion type",
};
// The overlays have colours of their own, none of the distortions' (and apart from them for colour-blind
// readers too): vermillion (Okabe-Ito) and maroon.
export const OVERLAY_COLOURS = { adversarial: "#D55E00", noise: "#800000" };

export function distortionColour(kind) {
  if (DISTORTION_COLOURS[kind]) return DISTORTION_COLOURS[kind];
  let h = 0;
  for (const c of String(kind)) h = (h * 31 + c.charCodeAt(0)) % SPARE_COLOURS.length;
  return SPARE_COLOURS[h];
}
export function distortionLabel(kind) {
  return DISTORTION_LABELS[kind] || String(kind).replace(/_/g, " ");
}

/** Shading opacity for a segment score in [0, 1]: faint for weak segments, stronger for the decisive ones, and
 * never so strong that the trace under it is hard to read. */
export function segmentOpacity(score) {
  const s = Math.min(1, Math.max(0, Number(score) || 0));
  return 0.08 + 0.27 * s;
}

function rgba(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha.toFixed(3)})`;
}

// The printed 12-lead layout: 3 rows x 4 columns of 2.5 s each, plus a lead II rhythm strip.
const STANDARD_ROWS = [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]];
const STANDARD_12 = STANDARD_ROWS.flat();
const PAGE_S = 10;
const MARGIN = { l: 40, r: 30, t: 10, b: 36 };  // plot margins in px (left + right = the non-paper width)
const SIDE_PX = MARGIN.l + MARGIN.r;
// Display-only stand-ins when the analysis names a lead slightly differently from the record (MLII vs II).
const STAND_INS = { MLII: ["II"], II: ["MLII"], MLI: ["I"], I: ["MLI"], MLIII: ["III"], III: ["MLIII"] };

/** Turn the /signal JSON into {leads, series: {lead: {t: number[], v: number[]}}, decimated}. */
export function normalizeSignal(body) {
  const leads = body.leads || [];
  const values = body.values ?? body.signal ?? body.data ?? {};
  const series = {};
  leads.forEach((lead, i) => {
    const v = Array.isArray(values) ? values[i] : values[lead];
    if (!v) return;
    let t;
    if (Array.isArray(body.times?.[0])) t = body.times[i];
    else if (Array.isArray(body.times)) t = body.times;
    else if (body.times && body.times[lead]) t = body.times[lead];
    else {
      const t0 = Number(body.t0 ?? body.start_s ?? 0);
      const dt = Number(body.dt ?? 1 / body.fs);
      t = v.map((_, k) => t0 + k * dt);
    }
    series[lead] = { t, v };
  });
  return { leads, series, decimated: Boolean(body.decimated), fs: Number(body.fs) };
}

function percentile(sorted, q) {
  if (!sorted.length) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))));
  return sorted[i];
}

/** A y range in mV covering every value (the row grows for a tall complex rather than cutting it), at least
 * 3 mV tall, on whole 0.5-mV grid lines, with 0.2 mV of paper above and below. */
export function rowRange(values) {
  let lo = Infinity, hi = -Infinity;
  for (const x of values) {
    if (!Number.isFinite(x)) continue;
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  if (lo > hi) return [-1.5, 1.5];
  const bottom = Math.floor((lo - 0.2) / MAJOR_MV) * MAJOR_MV;
  const top = Math.ceil((hi + 0.2) / MAJOR_MV) * MAJOR_MV;
  const pad = Math.max(0, 3 - (top - bottom)) / 2;
  const extra = Math.ceil(pad / MAJOR_MV) * MAJOR_MV;
  return [bottom - extra, top + extra];
}

/** The zoom the view really shows: screen mm per paper mm along time (the rows are scaled the same, so the grid
 * stays square). Capped at `MAX_ROW_ZOOM` for the rows' height. */
export function effectiveZoom(plotPx, seconds) {
  return plotPx / (Math.max(1e-6, seconds) * SPEED_MM_S * PX_PER_MM);
}
const MAX_ROW_ZOOM = 8;

/**
 * The ECG viewer bound to one record. Call `load()` once; then `showWindow`, `setSegments`, `setOverlay`,
 * `focusSegment`, `setZoom`, `setLayoutMode`. `onChange(state)` reports speed, gain and the visible window.
 */
export class EcgViewer {
  constructor(plotDiv, record, { onChange } = {}) {
    this.div = plotDiv;
    this.record = record;
    this.onChange = onChange || (() => {});
    this.duration = Number(record.duration_s) || 10;
    this.leads = record.leads || [];
    this.hasStandard12 = STANDARD_12.every((l) => this.leads.includes(l));
    this.layoutMode = this.hasStandard12 ? "standard" : "stacked";
    this.zoom = 1;
    this.page0 = 0;                      // start of the 10-s page in the standard layout
    this.range = null;                   // visible [start_s, end_s]
    this.data = null;                    // last signal fetch, normalised
    this.fetched = null;                 // {start, end, decimated}
    this.rowRanges = null;               // y range (mV) per row; kept while the signal in view fits it
    this.segments = [];
    this.selected = null;
    this.explanation = null;
    this.overlay = "none";               // "none" | "adversarial" | "noise"
    this.trueZoom = 1;                   // the zoom on screen (after a drag-zoom it differs from `zoom`)
    this._fetchSeq = 0;
    this._relayoutTimer = null;
    this._drawing = false;
    this.layers = [];                    // extra drawings (annotations.js): layer.draw({layout, data, rows, range, rowRanges})
  }

  /** Draw `layer` with every redraw, on top of the traces. */
  addLayer(layer) {
    this.layers.push(layer);
    return this.draw();
  }

  /** The lead name in this record for an analysis lead name (exact, else a stand-in), or null. */
  recordLead(name) {
    if (this.leads.includes(name)) return name;
    for (const alt of STAND_INS[name] || []) if (this.leads.includes(alt)) return alt;
    return null;
  }

  rows() {
    if (this.layoutMode === "standard") {
      return [...STANDARD_ROWS.map((leads) => ({ leads, columns: true })), { leads: ["II"], columns: false, rhythm: true }];
    }
    return this.leads.map((lead) => ({ leads: [lead], columns: false }));
  }

  pageLength() { return Math.min(PAGE_S, this.duration); }

  /** Time span [a, b] in which `lead` is drawn in row `row` (the lead's column on the printed page). */
  span(row, lead) {
    if (!row.columns) return [-Infinity, Infinity];
    const col = row.leads.indexOf(lead);
    const w = this.pageLength() / row.leads.length;
    return [this.page0 + col * w, this.page0 + (col + 1) * w];
  }

  /** The figure's width in px: the 10-s page at this zoom (standard layout), else the container's width. */
  plotWidthPx() {
    if (this.layoutMode === "standard") {
      return Math.round(this.pageLength() * SPEED_MM_S * PX_PER_MM * this.zoom) + SIDE_PX;
    }
    // A record shorter than the screen at this zoom gets a narrower plot, so the paper scale stays true.
    const whole = Math.ceil(this.duration * SPEED_MM_S * PX_PER_MM * this.zoom) + SIDE_PX;
    return Math.min(Math.max(480, this.div.clientWidth), whole);
  }

  defaultRange() {
    if (this.layoutMode === "standard") return [this.page0, this.page0 + this.pageLength()];
    const seconds = (this.plotWidthPx() - SIDE_PX) / (SPEED_MM_S * PX_PER_MM * this.zoom);
    const start = Math.max(0, Math.min(this.range ? this.range[0] : 0, this.duration - seconds));
    return [start, Math.min(this.duration, start + seconds)];
  }

  async load() {
    this.range = this.defaultRange();
    await this.fetchAndDraw();
    this.div.on?.("plotly_relayout", (ev) => this._onRelayout(ev));
  }

  /** Show [start_s, end_s]: in the standard layout this moves the page; in stacked it sets the window. */
  async showWindow(start_s, end_s = null) {
    if (this.layoutMode === "standard") {
      this.page0 = Math.max(0, Math.min(start_s, this.duration - this.pageLength()));
      this.range = this.defaultRange();
    } else {
      const width = end_s != null ? end_s - start_s : this.range[1] - this.range[0];
      const a = Math.max(0, Math.min(start_s, this.duration - width));
      this.range = [a, Math.min(this.duration, a + width)];
    }
    await this.fetchAndDraw();
  }

  /** Show the explained window from `start_s` at 100% zoom (true paper scale). */
  async showExplained(start_s) {
    this.zoom = 1;
    if (this.layoutMode === "standard") {
      await this.showWindow(start_s);
      return;
    }
    const seconds = (this.plotWidthPx() - SIDE_PX) / (SPEED_MM_S * PX_PER_MM);
    await this.showWindow(start_s, start_s + seconds);
  }

  async pan(fraction) {
    if (this.layoutMode === "standard") {
      await this.showWindow(this.page0 + fraction * this.pageLength() * 2);
      return;
    }
    const w = this.range[1] - this.range[0];
    await this.showWindow(this.range[0] + fraction * w, this.range[0] + fraction * w + w);
  }

  /** The zoom at which the 10-s page fills the plot's width (stacked layouts always fill it: 100%). */
  fitZoom() {
    if (this.layoutMode !== "standard") return 1;
    return (this.div.clientWidth - SIDE_PX) / (this.pageLength() * SPEED_MM_S * PX_PER_MM);
  }

  async setZoom(zoom) {
    this.zoom = Math.min(4, Math.max(0.25, zoom));
    if (this.layoutMode === "standard") {
      this.range = this.defaultRange();
    } else {
      const centre = (this.range[0] + this.range[1]) / 2;
      const seconds = (this.plotWidthPx() - SIDE_PX) / (SPEED_MM_S * PX_PER_MM * this.zoom);
      const a = Math.max(0, Math.min(centre - seconds / 2, this.duration - seconds));
      this.range = [a, Math.min(this.duration, a + seconds)];
    }
    await this.fetchAndDraw();
  }

  async setLayoutMode(mode) {
    if (mode === "standard" && !this.hasStandard12) return;
    const start = this.range ? this.range[0] : 0;
    this.layoutMode = mode;
    this.rowRanges = null;
    if (mode === "standard") this.page0 = Math.max(0, Math.min(start, this.duration - this.pageLength()));
    this.range = [start, start];  // defaultRange keeps the start and sizes the window for the new layout
    this.range = this.defaultRange();
    this.onLayoutChange?.(mode);
    await this.fetchAndDraw();
  }

  setSegments(segments, explanation) {
    this.segments = segments || [];
    this.explanation = explanation || null;
    this.selected = null;
    return this.draw();
  }

  setOverlay(mode) {
    this.overlay = mode;
    return this.draw();
  }

  /** Bring a segment into view (and outline it). In the standard layout the page moves so that the segment's
   * lead column covers it; when no page can, the view switches to all leads stacked. */
  async focusSegment(index) {
    const seg = this.segments[index];
    if (!seg) return;
    this.selected = index;
    const lead = this.recordLead(seg.lead);
    const mid = (seg.start_s + seg.end_s) / 2;
    if (this.layoutMode === "standard") {
      const row = STANDARD_ROWS.findIndex((r) => r.includes(lead));
      const w = this.pageLength() / 4;
      const col = row >= 0 ? STANDARD_ROWS[row].indexOf(lead) : -1;
      const page0 = col >= 0 ? mid - col * w - w / 2 : mid - this.pageLength() / 2;
      const clamped = Math.max(0, Math.min(page0, this.duration - this.pageLength()));
      const inColumn = col < 0 || (seg.start_s >= clamped + col * w - 1e-6 && seg.end_s <= clamped + (col + 1) * w + 1e-6);
      if (inColumn || lead === "II") {
        this.page0 = clamped;
        this.range = this.defaultRange();
        await this.fetchAndDraw();
        return;
      }
      await this.setLayoutMode("stacked");
    }
    const w = this.range[1] - this.range[0];
    await this.showWindow(mid - w / 2, mid + w / 2);
  }

  /** Fetch the visible window (plus a margin for small pans) at the resolution the plot can show, then draw. */
  async fetchAndDraw() {
    const [a, b] = this.range;
    const pad = (b - a) * 0.25;
    const start = Math.max(0, a - pad), end = Math.min(this.duration, b + pad);
    const widthPx = this.plotWidthPx();
    // Two points (min and max) per pixel column of the padded window.
    const maxPoints = Math.ceil(2 * widthPx * (end - start) / Math.max(1e-6, b - a));
    const seq = ++this._fetchSeq;
    const body = await api(`/records/${encodeURIComponent(this.record.id)}/signal`, {
      query: { start_s: start.toFixed(4), end_s: end.toFixed(4), max_points: maxPoints },
    });
    if (seq !== this._fetchSeq) return;  // a newer view was asked for meanwhile
    this.data = normalizeSignal(body);
    const expected = (end - start) * (this.data.fs || this.record.fs || 1);
    const got = Math.max(0, ...Object.values(this.data.series).map((s) => s.v.length));
    this.fetched = { start, end, decimated: this.data.decimated || got < expected * 0.9 };
    // Row heights stay put while the signal fits; a row whose signal wandered out (baseline drift in a long
    // record) is re-centred on what is now in view.
    const needed = this.rows().map((row) => rowRange(row.leads.flatMap((l) => this.data.series[l]?.v || [])));
    this.rowRanges = needed.map((want, r) => {
      const have = this.rowRanges?.[r];
      return have && want[0] >= have[0] - 1e-9 && want[1] <= have[1] + 1e-9 ? have : want;
    });
    await this.draw();
  }

  _onRelayout(ev) {
    if (this._drawing) return;
    const r0 = ev["xaxis.range[0]"] ?? ev["xaxis.range"]?.[0];
    const r1 = ev["xaxis.range[1]"] ?? ev["xaxis.range"]?.[1];
    if (ev["xaxis.autorange"]) {
      if (this.layoutMode !== "standard") this.zoom = 1;  // double-click: back to true paper scale
      this.range = this.defaultRange();
    } else if (r0 != null && r1 != null) {
      this.range = [Number(r0), Number(r1)];
      // A drag-zoom sets the time scale; in the stacked layout it becomes the zoom the buttons go on from.
      if (this.layoutMode !== "standard") {
        this.zoom = Math.min(MAX_ROW_ZOOM, effectiveZoom(this.plotWidthPx() - SIDE_PX, this.range[1] - this.range[0]));
      }
    } else {
      return;
    }
    clearTimeout(this._relayoutTimer);
    this._relayoutTimer = setTimeout(() => {
      const f = this.fetched;
      const [a, b] = this.range;
      const outside = !f || a < f.start - 1e-6 || b > f.end + 1e-6;
      // Zoomed in on decimated data: fetch again, now at full resolution for this window.
      const finer = f && f.decimated && (b - a) < (f.end - f.start) / 1.5;
      // Otherwise redraw all the same: the rows take the new time scale, so the grid stays square.
      if (outside || finer || ev["xaxis.autorange"]) this.fetchAndDraw();
      else this.draw();
    }, 200);
  }

  /** Effective speed (mm/s) and gain (mm/mV) on screen, measured from plotly's laid-out axes. */
  measure() {
    const full = this.div._fullLayout;
    if (!full || !full.xaxis) return null;
    const xa = full.xaxis, ya = full.yaxis;
    const speed = xa._length / (xa.range[1] - xa.range[0]) / PX_PER_MM;
    const gain = ya._length / (ya.range[1] - ya.range[0]) / PX_PER_MM;
    return { speed_mm_s: speed, gain_mm_mv: gain };
  }

  _emit() {
    this.onChange({ range: this.range, zoom: this.trueZoom, layout: this.layoutMode, measure: this.measure(),
      fetched: this.fetched });
  }

  _gridFor(seconds, plotPx) {
    const pxPerS = plotPx / Math.max(1e-6, seconds);
    const paper = pxPerS * MINOR_S >= 2.5;   // the 1-mm squares are still visible
    if (paper) return { dtick: MAJOR_S, minor: true, labelStep: pxPerS >= 150 ? 1 : 5 };
    const nice = [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600];
    const dtick = nice.find((d) => d * pxPerS >= 60) || 600;
    return { dtick, minor: false, labelStep: 1 };
  }

  async draw() {
    if (!this.data || !window.Plotly) return;
    const rows = this.rows();
    const widthPx = this.plotWidthPx();
    const margin = MARGIN;
    const plotPx = widthPx - SIDE_PX;
    const gap = 10;
    const [a, b] = this.range;
    // Rows at the time axis's scale: 10 mm/mV per 25 mm/s, so a small square is as tall as it is wide.
    this.trueZoom = effectiveZoom(plotPx, b - a);
    const rowZoom = Math.min(MAX_ROW_ZOOM, this.trueZoom);
    const rowPx = this.rowRanges.map(([lo, hi]) => (hi - lo) * GAIN_MM_MV * PX_PER_MM * rowZoom);
    const totalRows = rowPx.reduce((s, h) => s + h, 0) + gap * (rows.length - 1);
    const heightPx = Math.round(totalRows + margin.t + margin.b);
    const grid = this._gridFor(b - a, plotPx);

    const layout = {
      width: widthPx, height: heightPx, margin, showlegend: false, dragmode: "zoom", hovermode: "closest",
      paper_bgcolor: "#ffffff", plot_bgcolor: "#ffffff", annotations: [], shapes: [], font: { size: 11, color: "#1d2127" },
      hoverlabel: { bgcolor: "#ffffff", font: { color: "#1d2127" } },
    };
    const data = [];
    let top = 1;
    rows.forEach((row, r) => {
      const n = r === 0 ? "" : String(r + 1);
      const h = rowPx[r] / totalRows;
      const domain = [Math.max(0, top - h), top];
      top -= h + gap / totalRows;
      const last = r === rows.length - 1;
      layout[`xaxis${n}`] = {
        range: [a, b], matches: r === 0 ? undefined : "x", anchor: `y${n}`, showticklabels: last,
        ticksuffix: " s", ticklabelstep: grid.labelStep, dtick: grid.dtick, tick0: 0, ticks: "",
        showgrid: true, gridcolor: PAPER.major, gridwidth: 1, zeroline: false, showline: false,
        minor: grid.minor ? { dtick: MINOR_S, showgrid: true, gridcolor: PAPER.minor, gridwidth: 0.5 } : { showgrid: false },
        minallowed: 0, maxallowed: this.duration,
      };
      layout[`yaxis${n}`] = {
        domain, range: this.rowRanges[r], fixedrange: true, anchor: `x${n}`, showticklabels: false, ticks: "",
        dtick: MAJOR_MV, tick0: 0, showgrid: true, gridcolor: PAPER.major, gridwidth: 1, zeroline: false,
        minor: { dtick: MINOR_MV, showgrid: grid.minor, gridcolor: PAPER.minor, gridwidth: 0.5 },
      };
      const axes = { xaxis: `x${n}`, yaxis: `y${n}` };
      layout.shapes.push(this._calibrationPulse(r, n, plotPx, rowZoom));
      for (const lead of row.leads) {
        const [s0, s1] = this.span(row, lead);
        layout.annotations.push({
          xref: row.columns ? `x${n}` : `x${n} domain`, yref: `y${n} domain`,
          x: row.columns ? Math.max(s0, a) : 0, y: 1, xanchor: "left", yanchor: "top", showarrow: false,
          text: `<b>${esc(lead)}</b>${row.rhythm ? " (rhythm)" : ""}`, bgcolor: "rgba(255,255,255,0.75)",
          font: { size: 12 },
        });
        this._segmentTraces(lead, r, s0, s1, axes, data);
        const series = this.data.series[lead];
        if (series) {
          const clip = clipSeries(series.t, series.v, s0, s1);
          data.push({
            type: "scatter", mode: "lines", ...axes, x: clip.t, y: clip.v,
            // No hover on the trace itself: values are read off the grid, as on paper, and the pointer is
            // left to the shaded segments (points would otherwise win over fills in plotly's hover).
            line: { color: PAPER.trace, width: 1 }, name: lead, hoverinfo: "skip",
            meta: { kind: "signal", lead, row: r },
          });
        }
        this._overlayTraces(lead, r, s0, s1, axes, data);
      }
    });
    for (const layer of this.layers) layer.draw({ layout, data, rows, range: this.range, rowRanges: this.rowRanges });
    this._drawing = true;
    try {
      await window.Plotly.react(this.div, data, layout, {
        displaylogo: false, responsive: false, scrollZoom: false, doubleClick: "reset",
        modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d", "toImage"],
      });
    } finally {
      this._drawing = false;
    }
    this._emit();
  }

  /** A 1-mV, 0.2-s calibration pulse in the left margin of row `r`, standing on the row's baseline (the median
   * of its trace in view): 10 mm tall at 100%, as tall as 1 mV of the trace at any zoom. */
  _calibrationPulse(r, n, plotPx, rowZoom) {
    const values = this.rows()[r].leads.flatMap((l) => this.data.series[l]?.v || []).filter(Number.isFinite)
      .sort((p, q) => p - q);
    const [lo, hi] = this.rowRanges[r];
    const base = Math.min(hi - 1, Math.max(lo, values.length ? percentile(values, 0.5) : 0));
    const mm = PX_PER_MM / plotPx;  // one screen mm in paper (plot-width) units
    const w = 5 * mm * Math.min(rowZoom, 1);  // 0.2 s wide at 100%, kept inside the margin
    const x0 = -(MARGIN.l - 4) / plotPx, x1 = x0 + 1.5 * mm, x2 = x1 + w, x3 = x2 + 1.5 * mm;
    return {
      type: "path", xref: "paper", yref: `y${n}`, layer: "above", name: "calibration",
      path: `M ${x0},${base} L ${x1},${base} L ${x1},${base + 1} L ${x2},${base + 1} L ${x2},${base} L ${x3},${base}`,
      line: { color: PAPER.trace, width: 1.5 },
    };
  }

  _segmentTraces(lead, r, s0, s1, axes, data) {
    const [lo, hi] = this.rowRanges[r];
    this.segments.forEach((seg, i) => {
      if (this.recordLead(seg.lead) !== lead) return;
      const x0 = Math.max(seg.start_s, s0), x1 = Math.min(seg.end_s, s1);
      if (x1 <= x0) return;
      const colour = distortionColour(seg.distortion);
      const text = `${esc(seg.lead)}: ${seg.start_s.toFixed(2)}–${seg.end_s.toFixed(2)} s<br>score ${Number(seg.score).toFixed(2)}`
        + `<br>${esc(distortionLabel(seg.distortion))}`;
      data.push({
        type: "scatter", mode: "lines", ...axes, x: [x0, x1, x1, x0, x0], y: [lo, lo, hi, hi, lo],
        fill: "toself", fillcolor: rgba(colour, segmentOpacity(seg.score)), hoveron: "fills",
        line: { width: this.selected === i ? 2.5 : 0, color: "#000000", dash: "dot" },
        name: text, text, hoverinfo: "text", hoverlabel: { bgcolor: colour, font: { color: "#000000" } },
        meta: { kind: "segment", index: i, lead: seg.lead, start_s: seg.start_s, end_s: seg.end_s,
          score: seg.score, distortion: seg.distortion },
      });
    });
  }

  _overlayTraces(lead, r, s0, s1, axes, data) {
    const adv = this.explanation?.adversarial;
    if (this.overlay === "none" || !adv || !adv.signal) return;
    const leads = this.explanation.leads || [];
    const idx = leads.findIndex((l) => this.recordLead(l) === lead);
    if (idx < 0) return;
    const fs = Number(this.explanation.fs);
    const t0 = Number(this.explanation.start_s) || 0;
    const values = this.overlay === "noise" ? adv.noise?.[idx] : adv.signal[idx];
    if (!values || !fs) return;
    // The noise alone is drawn around the lead's baseline (the middle of its row) so it sits on the strip.
    const [lo, hi] = this.rowRanges[r];
    const offset = this.overlay === "noise" ? (lo + hi) / 2 : 0;
    const [a, b] = this.range;
    // Only where the search put noise (adversarial.spans): elsewhere the distorted signal is the ECG itself.
    const spans = Array.isArray(adv.spans)
      ? adv.spans.filter((sp) => this.recordLead(sp.lead) === lead).map((sp) => [sp.start_s, sp.end_s])
      : [[-Infinity, Infinity]];
    const t = [], v = [];
    for (const [sa, sb] of spans) {
      const first = Math.max(0, Math.floor((Math.max(a, s0, sa) - t0) * fs));
      const last = Math.min(values.length, Math.ceil((Math.min(b, s1, sb) - t0) * fs) + 1);
      if (last <= first) continue;
      if (t.length) { t.push(t0 + first / fs); v.push(null); }  // a gap between stretches
      for (let k = first; k < last; k += 1) { t.push(t0 + k / fs); v.push(values[k] + offset); }
    }
    if (!t.length) return;
    const label = this.overlay === "noise" ? "added noise" : "minimal adversarial";
    data.push({
      type: "scatter", mode: "lines", ...axes, x: t, y: v, name: `${lead} ${label}`, connectgaps: false,
      line: { color: OVERLAY_COLOURS[this.overlay], width: 1.2 }, opacity: 0.9,
      hoverinfo: "skip",
      meta: { kind: this.overlay, lead, row: r },
    });
  }
}

/** The part of a series inside [a, b] (with one sample either side so lines reach the edges). */
export function clipSeries(t, v, a, b) {
  if (a === -Infinity && b === Infinity) return { t, v };
  let i = 0, j = t.length;
  while (i < t.length && t[i] < a) i += 1;
  while (j > i && t[j - 1] > b) j -= 1;
  return { t: t.slice(i, j), v: v.slice(i, j) };
}

/** Toolbar markup for the viewer (buttons work with the keyboard; the plot also takes arrows, + and -). */
export function toolbarHtml(viewer) {
  return `
    <div class="viewer-toolbar" role="toolbar" aria-label="ECG view">
      <button type="button" class="btn btn-secondary btn-small" data-act="earlier" aria-label="Earlier">◀ Earlier</button>
      <button type="button" class="btn btn-secondary btn-small" data-act="later" aria-label="Later">Later ▶</button>
      <button type="button" class="btn btn-secondary btn-small" data-act="zoom-out" aria-label="Zoom out">−</button>
      <button type="button" class="btn btn-secondary btn-small" data-act="zoom-100">100%</button>
      <button type="button" class="btn btn-secondary btn-small" data-act="zoom-in" aria-label="Zoom in">+</button>
      <button type="button" class="btn btn-secondary btn-small" data-act="zoom-fit" title="Fill the width (not true paper scale)">Fit width</button>
      ${viewer.hasStandard12 ? `<label>Layout <select data-act="layout">
        <option value="standard">12-lead (3 × 4 + II)</option><option value="stacked">All leads stacked</option>
      </select></label>` : ""}
      <span class="readout" id="viewer-readout" aria-live="polite"></span>
    </div>`;
}

/** Wire a toolbar and keyboard control to a viewer. */
export function bindToolbar(toolbar, viewer, plotDiv) {
  const acts = {
    earlier: () => viewer.pan(-0.5),
    later: () => viewer.pan(0.5),
    "zoom-in": () => viewer.setZoom(viewer.zoom * 1.5),
    "zoom-out": () => viewer.setZoom(viewer.zoom / 1.5),
    "zoom-100": () => viewer.setZoom(1),
    "zoom-fit": () => viewer.setZoom(viewer.fitZoom()),
  };
  toolbar.addEventListener("click", (e) => {
    const act = e.target.closest("button")?.dataset.act;
    if (act && acts[act]) acts[act]();
  });
  const select = toolbar.querySelector('select[data-act="layout"]');
  if (select) {
    select.value = viewer.layoutMode;
    select.addEventListener("change", () => viewer.setLayoutMode(select.value));
    viewer.onLayoutChange = (mode) => { select.value = mode; };
  }
  plotDiv.addEventListener("keydown", (e) => {
    const key = { ArrowLeft: "earlier", ArrowRight: "later", "+": "zoom-in", "=": "zoom-in", "-": "zoom-out", 0: "zoom-100" }[e.key];
    if (key) {
      e.preventDefault();
      acts[key]();
    }
  });
}

/** One line for the readout: what is on screen and at which paper speed and gain. */
export function readoutText(state) {
  if (!state.range) return "";
  const m = state.measure;
  const [a, b] = state.range;
  const paper = m ? `${m.speed_mm_s.toFixed(1)} mm/s · ${m.gain_mm_mv.toFixed(1)} mm/mV` : "";
  // The zoom on screen, as the speed says it (25 mm/s is 100%).
  const res = state.fetched ? (state.fetched.decimated ? "overview (decimated)" : "full resolution") : "";
  const zoom = m ? m.speed_mm_s / SPEED_MM_S : state.zoom;
  return `${a.toFixed(2)}–${b.toFixed(2)} s · ${paper} · zoom ${Math.round(zoom * 100)}% · ${res}`;
}
