// Robustness panel: for each distortion type, the probability of the diagnosed finding against the SNR of
// whole-record noise (24 dB, clean-ish, on the left -> -6 dB, noise louder than the ECG, on the right), the SNR at
// which the diagnosis flips, and the overall score with what it means. Draws RobustnessReport.to_dict() and
// the account's words for it (summary.robustness: flips beyond the tested levels read "< −6 dB"). This is the
// untargeted test; the targeted flip of the analysis panel is a different one, and the panel says so.
import { esc } from "./api.js";
import { distortionColour, distortionLabel } from "./viewer.js";

// What the score means, for clinicians: the two sentences of ecglens/robustness.py's module docstring (the source).
export const SCORE_MEANING = "The share of noisy versions of this ECG on which the classifier kept its diagnosis — "
  + "each noise type at each of the six stress-test levels, several random draws each. 1 means the diagnosis "
  + "survived every one; 0.5 that it survived half of them, typically only the milder half.";

// Marker shapes and dashes as a second cue besides colour.
const SYMBOLS = ["circle", "square", "diamond", "triangle-up", "cross", "star"];
const DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"];

/** [{snr, p}] sorted from the highest SNR (least noise) to the lowest. */
export function curvePoints(probabilityAtSnr) {
  return Object.entries(probabilityAtSnr || {})
    .map(([k, v]) => ({ snr: Number(k), p: Number(v) }))
    .filter((pt) => Number.isFinite(pt.snr) && Number.isFinite(pt.p))
    .sort((a, b) => b.snr - a.snr);
}

function interpolate(points, snr) {
  for (let i = 0; i + 1 < points.length; i += 1) {
    const a = points[i], b = points[i + 1];
    if (snr <= a.snr && snr >= b.snr) {
      const f = a.snr === b.snr ? 0 : (a.snr - snr) / (a.snr - b.snr);
      return a.p + f * (b.p - a.p);
    }
  }
  return null;
}

function signed(x, digits) {
  const text = Number(x).toFixed(digits);
  return text.startsWith("-") ? `−${text.slice(1)}` : text;
}

/** The verdict for one noise type: the flip SNR within the tested levels, else only the side it lies on (the
 * same rule as ecglens.reports.summary.flip_text, used when the analysis has no account). */
export function flipText(flip, levels = [24, -6]) {
  if (flip == null) return "holds at every level tested";
  const lo = Math.min(...levels), hi = Math.max(...levels);
  if (flip < lo) return `flips below ${signed(lo, 0)} dB (< ${signed(lo, 0)} dB)`;
  if (flip > hi) return `flips above ${signed(hi, 0)} dB (> ${signed(hi, 0)} dB)`;
  return `flips at ${signed(flip, 1)} dB`;
}

/** Render the robustness panel for `report` into `container` (an element). */
export async function renderRobustness(container, report, { threshold: cardThreshold = null, summary = null } = {}) {
  if (!report) {
    container.innerHTML = `<h2>Robustness</h2><p class="muted">No robustness report for this analysis.</p>`;
    return;
  }
  const score = Number(report.score);
  const levelsDb = (report.snr_levels_db || []).map(Number);
  const rows = new Map((summary?.robustness?.rows || []).map((r) => [r.distortion, r]));
  const verdict = (d) => {
    const row = rows.get(d.distortion);
    if (!row) return flipText(d.flip_snr_db, levelsDb.length ? levelsDb : undefined);
    if (row.short === "holds") return "holds at every level tested";
    if (row.short.startsWith("<")) return `flips below ${row.short.slice(2)} (${row.short})`;
    if (row.short.startsWith(">")) return `flips above ${row.short.slice(2)} (${row.short})`;
    return `flips at ${row.short}`;
  };
  const statement = (summary?.statements || []).find((st) => st.key === "robustness")?.text;
  container.innerHTML = `
    <h2 id="robustness-title">Robustness of “${esc(report.label)}”</h2>
    <div class="row"><span class="score-big" id="robustness-score">${Number.isFinite(score) ? score.toFixed(2) : "–"}</span>
      <span class="muted">overall score, 0 (fragile) to 1 (robust)</span></div>
    <p class="small" id="robustness-meaning">${esc(SCORE_MEANING)}</p>
    ${statement ? `<p class="small" id="robustness-statement">${esc(statement)}</p>` : ""}
    <div id="robustness-plot" class="robustness-plot" role="img"
      aria-label="Probability of ${esc(report.label)} against signal-to-noise ratio, one curve per distortion type"></div>
    ${report.extra?.flip_rule ? `<p class="small muted">Counted as a change of diagnosis: ${esc(report.extra.flip_rule)}.
      Noise covers the whole ${report.extra.window_s ? `${Number(report.extra.window_s).toFixed(0)}-s ` : ""}window
      ${report.extra.start_s != null ? `from ${Number(report.extra.start_s).toFixed(1)} s` : ""}.
      ${report.extra.budget_exhausted ? "The query budget ran out before every flip point was pinned down." : ""}</p>` : ""}
    <table class="data small" id="robustness-table">
      <thead><tr><th scope="col">Distortion</th><th scope="col">Diagnosis</th></tr></thead>
      <tbody>${(report.distortions || []).map((d) => `
        <tr data-distortion="${esc(d.distortion)}"><td><span class="swatch" data-colour="${distortionColour(d.distortion)}"></span>
          ${esc(distortionLabel(d.distortion))}</td><td>${esc(verdict(d))}</td></tr>`).join("")}
      </tbody>
    </table>`;
  for (const el of container.querySelectorAll("[data-colour]")) el.style.background = el.dataset.colour;
  const plot = container.querySelector("#robustness-plot");
  const data = [];
  const shapes = [];
  const levels = (report.snr_levels_db || []).map(Number);
  const hi = Math.max(24, ...levels), lo = Math.min(-6, ...levels);
  (report.distortions || []).forEach((d, i) => {
    const pts = curvePoints(d.probability_at_snr);
    const colour = distortionColour(d.distortion);
    data.push({
      type: "scatter", mode: "lines+markers", x: pts.map((p) => p.snr), y: pts.map((p) => p.p),
      name: distortionLabel(d.distortion), line: { color: colour, width: 2, dash: DASHES[i % DASHES.length] },
      marker: { symbol: SYMBOLS[i % SYMBOLS.length], size: 8, color: colour },
      hovertemplate: `${esc(distortionLabel(d.distortion))}<br>%{x} dB: p = %{y:.2f}<extra></extra>`,
      meta: { kind: "robustness", distortion: d.distortion, flip_snr_db: d.flip_snr_db },
    });
    if (d.flip_snr_db != null) {
      const flip = Number(d.flip_snr_db);
      const shown = Math.min(hi, Math.max(lo, flip));
      shapes.push({ type: "line", xref: "x", yref: "paper", x0: shown, x1: shown, y0: 0, y1: 1,
        line: { color: colour, width: 1.5, dash: "dot" } });
      const p = interpolate(pts, shown);
      data.push({
        type: "scatter", mode: "markers", x: [shown], y: [p ?? 0.5], showlegend: false,
        marker: { symbol: "x-thin-open", size: 14, line: { width: 3, color: colour }, color: colour },
        hovertemplate: `${esc(distortionLabel(d.distortion))}: diagnosis ${esc(verdict(d))}<extra></extra>`,
        meta: { kind: "flip", distortion: d.distortion, flip_snr_db: flip },
      });
    }
  });
  // The operating threshold of the diagnosed class (below it the finding is no longer reported).
  const threshold = report.extra?.threshold ?? cardThreshold;
  const annotations = [];
  if (threshold != null && Number.isFinite(Number(threshold))) {
    shapes.push({ type: "line", xref: "paper", yref: "y", x0: 0, x1: 1, y0: threshold, y1: threshold,
      line: { color: "#5a6270", width: 1, dash: "dash" } });
    annotations.push({ xref: "paper", yref: "y", x: 1, y: threshold, xanchor: "right", yanchor: "bottom",
      text: `threshold ${Number(threshold).toFixed(2)}`, showarrow: false, font: { size: 10, color: "#5a6270" } });
  }
  const layout = {
    height: 320, margin: { l: 50, r: 10, t: 10, b: 80 }, showlegend: true,
    legend: { orientation: "h", y: -0.3, x: 0, font: { size: 11 } },
    xaxis: { title: { text: "SNR (dB) — more noise →" }, range: [hi + 1, lo - 1], dtick: 6, zeroline: false,
      gridcolor: "#e7eaef" },
    yaxis: { title: { text: `p(${report.label})` }, range: [0, 1.02], gridcolor: "#e7eaef", zeroline: false },
    shapes, annotations, paper_bgcolor: "#ffffff", plot_bgcolor: "#ffffff", font: { size: 11, color: "#1d2127" },
  };
  await window.Plotly.react(plot, data, layout, { displaylogo: false, responsive: true,
    modeBarButtonsToRemove: ["lasso2d", "select2d", "toImage"] });
}
