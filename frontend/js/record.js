// Record page: the record's header line, the ECG viewer, the analysis panel and the robustness panel.
import { api, esc } from "./api.js";
import { mountAnalysis } from "./analysis.js";
import { formatDate, formatDuration } from "./records.js";
import { bindToolbar, EcgViewer, readoutText, toolbarHtml } from "./viewer.js";

/** Render record `id` into `root`. Returns a cleanup function. */
export async function render(root, id) {
  root.innerHTML = `<p class="muted">Loading the record…</p>`;
  let record;
  try {
    record = await api(`/records/${encodeURIComponent(id)}`);
  } catch (err) {
    root.innerHTML = `<p class="alert" role="alert">${esc(err.message)}</p><p><a href="#/records">Back to records</a></p>`;
    return () => {};
  }
  const leads = record.leads || [];
  root.innerHTML = `
    <div class="record-head">
      <h1 id="record-title">${esc(record.name || record.filename || record.id)}</h1>
      <span class="meta">${esc(record.format || "")} · ${leads.length} lead${leads.length === 1 ? "" : "s"}
        (${esc(leads.join(", "))}) · ${record.fs ? `${Number(record.fs).toFixed(0)} Hz` : ""}
        · ${record.duration_s != null ? esc(formatDuration(record.duration_s)) : ""}
        · uploaded ${esc(formatDate(record.created_at))}</span>
    </div>
    <div class="record-grid has-side">
      <section class="panel" aria-labelledby="ecg-title">
        <h2 id="ecg-title" class="hidden">ECG</h2>
        <div id="viewer-toolbar-slot"></div>
        <div id="ecg-plot" class="ecg-plot" tabindex="0"
             aria-label="ECG of ${esc(record.name || record.id)}. Arrow keys move in time, plus and minus zoom."></div>
        <p class="small muted" style="margin:.4rem 0 0">Paper grid: small squares 0.04 s × 0.1 mV, large squares
          0.2 s × 0.5 mV. Drag across the ECG to zoom in time; double-click to go back.</p>
      </section>
      <div class="side-panels">
        <section class="panel" id="analysis-panel" aria-label="Analysis"></section>
        <section class="panel" id="result-panel" aria-live="polite"></section>
        <section class="panel" id="robustness-panel" aria-labelledby="robustness-title"></section>
      </div>
    </div>`;
  const plot = root.querySelector("#ecg-plot");
  const viewer = new EcgViewer(plot, record, {
    onChange: (state) => {
      const out = root.querySelector("#viewer-readout");
      if (out) out.textContent = readoutText(state);
      // Nothing earlier than the start or later than the end of the record.
      const earlier = root.querySelector('[data-act="earlier"]'), later = root.querySelector('[data-act="later"]');
      if (earlier && state.range) earlier.disabled = state.range[0] <= 1e-6;
      if (later && state.range) later.disabled = state.range[1] >= Number(record.duration_s) - 1e-6;
    },
  });
  const slot = root.querySelector("#viewer-toolbar-slot");
  slot.innerHTML = toolbarHtml(viewer);
  bindToolbar(slot.firstElementChild, viewer, plot);
  try {
    await viewer.load();
  } catch (err) {
    plot.innerHTML = `<p class="alert" role="alert">The signal could not be shown: ${esc(err.message)}</p>`;
  }
  const cleanup = mountAnalysis({
    form: root.querySelector("#analysis-panel"),
    result: root.querySelector("#result-panel"),
    robustness: root.querySelector("#robustness-panel"),
  }, record, viewer);
  // A stacked layout fills the width: redraw (same zoom, same start) when the window is resized.
  let resizeTimer = null;
  const onResize = () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => viewer.setZoom(viewer.zoom).catch(() => {}), 250);
  };
  window.addEventListener("resize", onResize);
  return () => {
    cleanup();
    clearTimeout(resizeTimer);
    window.removeEventListener("resize", onResize);
    for (const div of root.querySelectorAll(".js-plotly-plot")) window.Plotly?.purge(div);
  };
}
