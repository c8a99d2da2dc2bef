// Record page: the record's header line (and what its reader warned about), the timeline of the whole recording,
// the ECG viewer with the reference annotations, the analysis panel and the robustness panel.
import { api, esc } from "./api.js";
import { mountAnalysis } from "./analysis.js";
import { AnnotationLayer, annotationSummary, loadAnnotations } from "./annotations.js";
import { mountFitNotice } from "./fit.js";
import { formatDate, formatDuration } from "./records.js";
import { Timeline } from "./timeline.js";
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
    ${(record.warnings || []).length ? `<div class="alert record-warnings" id="record-warnings" role="note">
      <strong>Read with ${record.warnings.length === 1 ? "a warning" : `${record.warnings.length} warnings`}:</strong>
      <ul>${record.warnings.map((w) => `<li>${esc(w)}</li>`).join("")}</ul></div>` : ""}
    <div class="record-grid has-side">
      <section class="panel" aria-labelledby="ecg-title">
        <h2 id="ecg-title" class="hidden">ECG</h2>
        <div id="timeline" class="timeline" hidden></div>
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
  const timeline = new Timeline(root.querySelector("#timeline"), {
    duration: record.duration_s,
    // A moment picked on the timeline: the analysis form explains that window.
    onPick: (start) => {
      const form = root.querySelector("#analysis-form");
      const button = root.querySelector("#analysis-start");
      if (!form || button?.disabled) return false;
      form.dataset.startS = String(start);
      form.requestSubmit();
      return true;
    },
    // Another explained window: its segments on the ECG, and the view moves there.
    onShow: async (_, w) => {
      if (!w?.explanation) return;
      await viewer.setSegments(w.explanation.segments || [], w.explanation);
      await viewer.showExplained(Number(w.start_s) || 0);
    },
  });
  // On this page's own result panel (the page root outlives the page).
  root.querySelector("#result-panel").addEventListener("analysis-shown", (e) => {
    timeline.shown = 0;
    timeline.render(e.detail);
  });
  const viewer = new EcgViewer(plot, record, {
    onChange: (state) => {
      const out = root.querySelector("#viewer-readout");
      if (out) out.textContent = readoutText(state);
      // Nothing earlier than the start or later than the end of the record.
      const earlier = root.querySelector('[data-act="earlier"]'), later = root.querySelector('[data-act="later"]');
      if (earlier && state.range) earlier.disabled = state.range[0] <= 1e-6;
      if (later && state.range) later.disabled = state.range[1] >= Number(record.duration_s) - 1e-6;
      timeline.setView(state.range);
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
  loadAnnotations(record).then((files) => {
    if (!files.length) return;
    plot.insertAdjacentHTML("afterend", `<p class="small" id="annotation-legend">Reference annotations:
      ${files.map((f) => esc(annotationSummary(f))).join("; ")}. Beat labels are drawn on the top lead when zoomed in.</p>`);
    return viewer.addLayer(new AnnotationLayer(files));
  }).catch((err) => {
    plot.insertAdjacentHTML("afterend", `<p class="alert small" role="alert">The annotations could not be shown: ${esc(err.message)}</p>`);
  });
  const cleanup = mountAnalysis({
    form: root.querySelector("#analysis-panel"),
    result: root.querySelector("#result-panel"),
    robustness: root.querySelector("#robustness-panel"),
  }, record, viewer);
  mountFitNotice(root.querySelector("#analysis-panel"), record);
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
