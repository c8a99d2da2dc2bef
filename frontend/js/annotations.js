// Reference annotations on the ECG: the beat labels and rhythm episodes uploaded with the record (100.atr, ...),
// from GET /records/{id}/annotations, drawn as a layer of the viewer (`viewer.addLayer`) on the top row: each beat's
// symbol at its time (coloured by AAMI class), each rhythm change's label. It draws only what the API returns.
import { api, esc } from "./api.js";

// AAMI EC57 classes: normal beats quiet, ectopic beats in the Okabe-Ito colours.
export const AAMI_COLOURS = { N: "#6b6b6b", S: "#0072B2", V: "#D55E00", F: "#CC79A7", Q: "#999999" };
export const AAMI_NAMES = { N: "normal / bundle branch", S: "supraventricular ectopic", V: "ventricular ectopic",
  F: "fusion", Q: "paced / unclassifiable" };
// Beyond this many beats on screen (a 30-min overview) labels would overlap: they are shown once zoomed in.
export const MAX_LABELS = 600;

/** One line per annotation file: "100.atr: 2273 beats (2239 N, 33 S, 1 V), 1 rhythm episode". */
export function annotationSummary(file) {
  const counts = Object.entries(file.beat_counts || {}).sort((a, b) => b[1] - a[1]);
  const beats = (file.beats || []).length;
  const rhythms = (file.rhythms || []).length;
  return `${file.filename}: ${beats} beat${beats === 1 ? "" : "s"}`
    + (counts.length ? ` (${counts.map(([c, n]) => `${n} ${c}`).join(", ")})` : "")
    + (rhythms ? `, ${rhythms} rhythm episode${rhythms === 1 ? "" : "s"}` : "");
}

/** The record's annotation files (GET /records/{id}/annotations), or [] when it was uploaded without any. */
export async function loadAnnotations(record) {
  if (!(record.files || []).some((f) => f.role === "annotation")) return [];
  const body = await api(`/records/${encodeURIComponent(record.id)}/annotations`);
  return Array.isArray(body?.files) ? body.files : [];
}

/**
 * A viewer layer for `files` (the `files` of GET /records/{id}/annotations). `draw(ctx)` is called by the viewer
 * with {layout, data, rows, range, rowRanges}; it adds traces with meta.kind "annotation" / "rhythm".
 */
export class AnnotationLayer {
  constructor(files) {
    this.files = files || [];
    this.visible = true;
  }

  draw({ data, rows, range, rowRanges }) {
    if (!this.visible || !this.files.length || !rows.length || !rowRanges?.length) return;
    const [a, b] = range;
    const [lo, hi] = rowRanges[0];
    const axes = { xaxis: "x", yaxis: "y" };
    const yBeat = hi - 0.12 * (hi - lo), yRhythm = hi - 0.04 * (hi - lo);
    for (const file of this.files) {
      const beats = (file.beats || []).filter((x) => x.time_s >= a && x.time_s <= b);
      if (beats.length && beats.length <= MAX_LABELS) {
        data.push({
          type: "scatter", mode: "text", ...axes, x: beats.map((x) => x.time_s), y: beats.map(() => yBeat),
          text: beats.map((x) => (x.aami === "N" ? esc(x.symbol) : `<b>${esc(x.symbol)}</b>`)),
          textfont: { size: 11, color: beats.map((x) => AAMI_COLOURS[x.aami] || "#000000") },
          hovertext: beats.map((x) => `${esc(x.symbol)} · AAMI ${esc(x.aami)} (${esc(AAMI_NAMES[x.aami] || "")})`
            + `<br>${x.time_s.toFixed(3)} s · ${esc(file.filename)}`),
          hoverinfo: "text", name: file.filename, showlegend: false,
          meta: { kind: "annotation", file: file.filename, count: beats.length },
        });
      }
      const episodes = (file.rhythms || []).filter((r) => r.end_s >= a && r.start_s <= b);
      if (episodes.length) {
        data.push({
          type: "scatter", mode: "text", ...axes, x: episodes.map((r) => Math.max(r.start_s, a)),
          y: episodes.map(() => yRhythm), text: episodes.map((r) => `(${esc(r.label)}`), textposition: "middle right",
          textfont: { size: 11, color: "#1d2127" },
          hovertext: episodes.map((r) => `${esc(r.name)}<br>${r.start_s.toFixed(1)}–${r.end_s.toFixed(1)} s · ${esc(file.filename)}`),
          hoverinfo: "text", showlegend: false, meta: { kind: "rhythm", file: file.filename, count: episodes.length },
        });
      }
    }
  }
}
