// Record page: the record's header line with the patient fields, the clinical basics and what its reader warned
// about; the account of the latest result (above the ECG, so it is read first); the timeline of the whole
// recording; the ECG viewer with the reference annotations; the analysis panel and the robustness panel. An
// auditor sees the record's metadata and its analyses' metadata only.
import { api, esc, getWho } from "./api.js";
import { mountAnalysis } from "./analysis.js";
import { AnnotationLayer, annotationSummary, loadAnnotations } from "./annotations.js";
import { mountFitNotice } from "./fit.js";
import { formatDate, formatDuration, statusBadge, unwrapList } from "./records.js";
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
  const head = `
    <div class="record-head">
      <h1 id="record-title">${esc(record.name || record.filename || record.id)}</h1>
      <span class="meta">${esc(record.format || "")} · ${leads.length} lead${leads.length === 1 ? "" : "s"}
        (${esc(leads.join(", "))}) · ${record.fs ? `${Number(record.fs).toFixed(0)} Hz` : ""}
        · ${record.duration_s != null ? esc(formatDuration(record.duration_s)) : ""}
        · uploaded ${esc(formatDate(record.created_at))}</span>
    </div>
    ${(record.warnings || []).length ? `<div class="alert record-warnings" id="record-warnings" role="note">
      <strong>Read with ${record.warnings.length === 1 ? "a warning" : `${record.warnings.length} warnings`}:</strong>
      <ul>${record.warnings.map((w) => `<li>${esc(w)}</li>`).join("")}</ul></div>` : ""}`;
  if (getWho()?.role === "auditor") {
    await renderMetadataOnly(root, record, head);
    return () => {};
  }
  const patient = patientHtml(record.patient), basics = basicsHtml(record);
  root.innerHTML = `${head}
    ${patient || basics ? `<div class="clinical-line" id="record-clinical">${patient}${basics}</div>` : ""}
    <section class="panel summary-panel hidden" id="summary-panel" aria-labelledby="summary-title" aria-live="polite"></section>
    <div class="record-grid has-side">
      <section class="panel" aria-labelledby="ecg-title">
        <h2 id="ecg-title" class="hidden">ECG</h2>
        <div id="timeline" class="timeline" hidden></div>
        <div id="viewer-toolbar-slot"></div>
        <div id="ecg-plot" class="ecg-plot" tabindex="0"
             aria-label="ECG of ${esc(record.name || record.id)}. Arrow keys move in time, plus and minus zoom."></div>
        <p class="small muted grid-note">Paper grid: small squares 0.04 s × 0.1 mV, large squares 0.2 s × 0.5 mV;
          the pulse at the start of each row is 1 mV. Drag across the ECG to zoom (the grid stays square);
          double-click to go back.</p>
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
    summary: root.querySelector("#summary-panel"),
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

const SEX = { M: "male", F: "female" };

/** The header's patient fields (GET /records/{id} gives them to clinicians and admins): age, sex, diagnoses. */
export function patientHtml(patient) {
  if (!patient) return "";
  const parts = [];
  if (patient.id) parts.push(`ID ${esc(patient.id)}`);
  if (patient.age != null) parts.push(`${esc(patient.age)} years`);
  if (patient.sex) parts.push(esc(SEX[patient.sex] || patient.sex));
  const dx = (patient.diagnoses || []).map((d) => (d.display && d.display !== d.code
    ? `${esc(d.display)} <span class="muted">(${esc(d.code)})</span>` : `<span title="${d.system ? "SNOMED CT code" : ""}">${esc(d.code)}</span>`));
  if (!parts.length && !dx.length) return "";
  return `<span id="patient-fields"><strong>Patient</strong> ${parts.join(", ") || "–"}${dx.length
    ? ` · <strong>header diagnoses</strong> ${dx.join(", ")}` : ""}</span>`;
}

function ms(value) { return value == null ? "–" : `${Math.round(Number(value))}`; }

/** Heart rate and intervals measured on the ECG (neurokit2 delineation), with where they were measured. */
export function basicsHtml(record) {
  const iv = record.intervals_ms;
  if (record.heart_rate_bpm == null && !iv) return "";
  const how = record.basics || {};
  const where = how.lead ? ` <span class="muted">(lead ${esc(how.lead)}, ${Number(how.start_s).toFixed(0)}–${Number(how.end_s).toFixed(0)} s,
    ${esc(how.beats)} beats; QTc ${esc(how.qtc_formula || "Bazett")})</span>` : "";
  return `<span id="clinical-basics"><strong>HR</strong> ${record.heart_rate_bpm == null ? "–" : `${Math.round(record.heart_rate_bpm)} bpm`}
    · <strong>RR</strong> ${ms(iv?.RR)} · <strong>PR</strong> ${ms(iv?.PR)} · <strong>QRS</strong> ${ms(iv?.QRS)}
    · <strong>QT</strong> ${ms(iv?.QT)} · <strong>QTc</strong> ${ms(iv?.QTc)} ms${where}</span>`;
}

/** What an auditor sees of a record: its metadata and its analyses' metadata (no samples, no results). */
async function renderMetadataOnly(root, record, head) {
  let analyses = [];
  try {
    analyses = unwrapList(await api("/analyses", { query: { record_id: record.id, limit: 100 } })).items;
  } catch { /* the metadata alone is still shown */ }
  const files = (record.files || []).map((f) => `<li><code>${esc(f.filename)}</code> ${esc(f.size)} bytes,
    SHA-256 <code class="hash">${esc(f.sha256)}</code></li>`).join("");
  root.innerHTML = `${head}
    <section class="panel" id="record-metadata" aria-labelledby="metadata-title">
      <h2 id="metadata-title">Record metadata</h2>
      <table class="data small"><tbody>
        <tr><th scope="row">Record id</th><td><code>${esc(record.id)}</code></td></tr>
        <tr><th scope="row">Uploaded</th><td>${esc(formatDate(record.created_at))} by key ${esc(record.created_by || "–")}</td></tr>
        <tr><th scope="row">Files</th><td><ul class="plain">${files}</ul></td></tr>
      </tbody></table>
      <p class="small muted">As an auditor you see what was uploaded and analysed, when and by whom; the signal,
        the patient fields and the results are for clinicians. <a href="#/audit?record=${encodeURIComponent(record.id)}">This record's audit events</a>.</p>
    </section>
    <section class="panel" id="record-analyses" aria-labelledby="analyses-title">
      <h2 id="analyses-title">Analyses</h2>
      ${analyses.length ? `<table class="data small"><thead><tr><th scope="col">Started</th><th scope="col">Model</th>
        <th scope="col">Status</th><th scope="col">Queries</th><th scope="col">By key</th></tr></thead><tbody>
        ${analyses.map((a) => `<tr><td>${esc(formatDate(a.created_at))}</td><td>${esc(a.model)}</td>
          <td>${statusBadge(a.status, a.progress)}</td><td>${esc(a.queries)}</td><td>${esc(a.created_by || "–")}</td></tr>`).join("")}
        </tbody></table>` : `<p class="muted">No analyses of this record.</p>`}
    </section>`;
}
