// Analysis panel: start an analysis (model, distortion types, query budget), follow its progress events, then
// show the diagnosis, the critical segments (a list that moves the ECG view to each) and the overlay toggle.
// Everything shown comes from GET /analyses/{id}; the browser computes nothing about the ECG.
import { api, apiOffers, downloadFile, esc, streamEvents } from "./api.js";
import { unwrapList } from "./records.js";
import { renderRobustness } from "./robustness.js";
import { distortionColour, distortionLabel, OVERLAY_COLOURS } from "./viewer.js";

const DEFAULT_BUDGET = 500;

/** The distortion kinds GET /distortions offers, in the explainer's order. */
export function distortionKinds(body) {
  return unwrapList(body).items.map((k) => (typeof k === "string" ? k : k.name)).filter(Boolean);
}

/** One checkbox per distortion kind, all checked. */
function kindChecks(kinds) {
  return kinds.map((kind) => `
          <label><input type="checkbox" name="distortions" value="${esc(kind)}" checked>
            <span class="swatch" data-colour="${distortionColour(kind)}"></span>${esc(distortionLabel(kind))}</label>`).join("");
}

/** The model names GET /models offers (falls back to the built-in model). */
function modelOptions(body) {
  const { items } = unwrapList(body);
  const names = items.map((m) => (typeof m === "string" ? m : m.name ?? m.id ?? m.spec)).filter(Boolean);
  return names.length ? names : ["builtin"];
}

/** The selected model's own caveats from its card: intended use and `extra.known_issues`, shown before it runs. */
export function modelNote(body, name) {
  const { items } = unwrapList(body);
  const card = items.find((m) => m && typeof m === "object" && m.name === name)?.card ?? {};
  const issues = Array.isArray(card.extra?.known_issues) ? card.extra.known_issues : [];
  const use = card.intended_use ? `<p class="muted">${esc(card.intended_use)}</p>` : "";
  const known = issues.length ? `<p><strong>Known issues of this model:</strong></p>
    <ul>${issues.map((t) => `<li>${esc(t)}</li>`).join("")}</ul>` : "";
  return use + known;
}

function pct(x) { return `${(100 * Number(x)).toFixed(1)}%`; }

/**
 * Mount the analysis panel. `els` = {form, result, robustness} containers; `viewer` is the EcgViewer.
 * Returns a cleanup function that stops following progress events.
 */
export function mountAnalysis(els, record, viewer) {
  const controller = new AbortController();
  // The registered models with their cards (class names, thresholds), fetched once for the form and results.
  const state = { analysisId: null, polling: null, models: api("/models").catch(() => null) };
  renderForm(els.form, record, state, viewer, els, controller);
  loadLatest(record, state, viewer, els, controller);
  return () => {
    controller.abort();
    clearTimeout(state.polling);
  };
}

async function renderForm(target, record, state, viewer, els, controller) {
  target.innerHTML = `
    <h2>Analysis</h2>
    <form id="analysis-form" class="analysis-form">
      <div class="row">
        <div class="field"><label for="analysis-model">Model</label>
          <select id="analysis-model" name="model"><option>builtin</option></select></div>
        <div class="field"><label for="analysis-budget">Query budget</label>
          <input id="analysis-budget" name="query_budget" type="number" min="10" max="100000" step="10"
                 value="${DEFAULT_BUDGET}" class="input-narrow"></div>
      </div>
      <div id="analysis-model-note" class="model-note"></div>
      <fieldset class="distortion-choice"><legend>Distortion types</legend>
        <div class="checks" id="analysis-kinds" aria-busy="true"></div></fieldset>
      <div class="row form-actions">
        <button class="btn" type="submit" id="analysis-start">Start analysis</button>
        <span id="analysis-form-error" class="error" role="alert"></span>
      </div>
    </form>
    <div id="analysis-progress" class="progress-wrap hidden">
      <progress id="analysis-progress-bar" max="100" value="0" aria-label="Analysis progress"></progress>
      <span id="analysis-progress-text" aria-live="polite"></span>
    </div>`;
  paintSwatches(target);
  const form = target.querySelector("#analysis-form");
  const select = target.querySelector("#analysis-model");
  const error = target.querySelector("#analysis-form-error");
  const note = target.querySelector("#analysis-model-note");
  const checks = target.querySelector("#analysis-kinds");
  api("/distortions").then((body) => {
    checks.innerHTML = kindChecks(distortionKinds(body));
    paintSwatches(checks);
  }).catch((err) => {
    checks.innerHTML = `<span class="error">The distortion types could not be loaded (${esc(err.message)}).</span>`;
  }).finally(() => checks.removeAttribute("aria-busy"));
  state.models.then((body) => {
    if (!body) return;  // the built-in model stays the only choice
    select.innerHTML = modelOptions(body).map((m) => `<option value="${esc(m)}">${esc(m)}</option>`).join("");
    const showNote = () => { note.innerHTML = modelNote(body, select.value); };
    select.addEventListener("change", showNote);
    showNote();
  });

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    const fd = new FormData(form);
    const distortions = fd.getAll("distortions");
    const budget = Number(fd.get("query_budget"));
    if (!distortions.length) { error.textContent = "Choose at least one distortion type."; return; }
    if (!Number.isInteger(budget) || budget < 10) { error.textContent = "The query budget must be a whole number of at least 10."; return; }
    const button = form.querySelector("#analysis-start");
    button.disabled = true;
    try {
      // A moment picked on the timeline (timeline.js) sets the window to explain.
      const start = form.dataset.startS;
      delete form.dataset.startS;
      const created = await api("/analyses", { method: "POST", json: {
        record_id: record.id, model: fd.get("model"), distortions, query_budget: budget, seed: 0,
        ...(start != null ? { start_s: Number(start) } : {}) } });
      els.result.innerHTML = "";
      els.robustness.innerHTML = "";
      if (els.summary) { els.summary.innerHTML = ""; els.summary.classList.add("hidden"); }
      viewer.setSegments([], null);
      await follow(created.id, state, viewer, els, controller);
    } catch (err) {
      if (err.name !== "AbortError") error.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });
}

async function loadLatest(record, state, viewer, els, controller) {
  let list;
  try {
    list = unwrapList(await api("/analyses", { query: { record_id: record.id, limit: 1 } })).items;
  } catch {
    return;  // nothing to show yet
  }
  if (!list.length) return;
  const latest = [...list].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)))[0];
  await follow(latest.id, state, viewer, els, controller);
}

function setProgress(els, status, progress) {
  const wrap = els.form.querySelector("#analysis-progress");
  const bar = els.form.querySelector("#analysis-progress-bar");
  const text = els.form.querySelector("#analysis-progress-text");
  wrap.classList.remove("hidden");
  if (progress != null && Number.isFinite(Number(progress))) bar.value = Math.max(0, Math.min(100, Number(progress)));
  const words = { queued: "Waiting for a worker…", running: "Running", done: "Done", failed: "Failed" }[status] || status;
  text.textContent = status === "running" ? `${words} ${Math.round(bar.value)}%` : words;
  wrap.dataset.status = status;
}

/**
 * The shading while an analysis runs: each progress event's `segments` (the explainer's current best in the
 * explained window `window`) replace that window's, and every window's latest are drawn. The view moves once, to
 * the window of the first segments (the job explains the result's window first). `partial` maps a window index
 * to its segments (one Map per followed analysis). Returns whether the shading changed.
 */
export function showPartial(viewer, partial, d) {
  if (!Array.isArray(d?.segments) || !d.window) return false;
  const index = Number(d.window.index) || 0;
  if (partial.has(index) && JSON.stringify(partial.get(index)) === JSON.stringify(d.segments)) return false;
  const first = ![...partial.values()].some((segments) => segments.length);
  partial.set(index, d.segments);
  const drawn = viewer.setSegments([...partial.values()].flat(), null);
  const start = Number(d.window.start_s);
  const moved = first && d.segments.length && Number.isFinite(start) ? viewer.showExplained(start) : null;
  // Not awaited (the next event may come first); a redraw that fails leaves the previous shading.
  Promise.all([drawn, moved]).catch((err) => console.warn("segments not redrawn:", err));
  return true;
}

/** Follow one analysis: progress events until done or failed (redrawing the shading from each event's
 * segments), then show its result, whose segments replace them. */
async function follow(id, state, viewer, els, controller) {
  state.analysisId = id;
  let analysis = await api(`/analyses/${encodeURIComponent(id)}`, { signal: controller.signal });
  setProgress(els, analysis.status, analysis.progress);
  const partial = new Map();  // window index -> its current best segments
  if (analysis.status === "queued" || analysis.status === "running") {
    try {
      await streamEvents(`/analyses/${encodeURIComponent(id)}/events`, ({ event, data }) => {
        if (state.analysisId !== id) return;  // a newer analysis was started meanwhile
        const d = typeof data === "object" && data ? data : {};
        const status = d.status ?? (event === "message" || event === "progress" ? "running" : event);
        setProgress(els, status, d.progress);
        if (event === "progress") showPartial(viewer, partial, d);
      }, { signal: controller.signal });
    } catch (err) {
      if (err.name === "AbortError") return;
      // The event stream failed (proxy, old server): poll instead.
      await poll(id, els, controller);
    }
    analysis = await api(`/analyses/${encodeURIComponent(id)}`, { signal: controller.signal });
    setProgress(els, analysis.status, analysis.progress);
  }
  if (state.analysisId !== id) return;
  if (analysis.status === "done") {
    await showResult(analysis, viewer, els, await state.models);
  } else if (analysis.status === "failed" && partial.size) {
    await viewer.setSegments([], null);  // no result replaces them: a failed search's segments are no finding
  }
  if (analysis.status === "failed") {
    els.result.innerHTML = `<p class="alert" role="alert">The analysis failed: ${esc(analysis.error || "no reason given")}</p>`;
  }
}

async function poll(id, els, controller) {
  for (;;) {
    if (controller.signal.aborted) return;
    const a = await api(`/analyses/${encodeURIComponent(id)}`, { signal: controller.signal });
    setProgress(els, a.status, a.progress);
    if (a.status === "done" || a.status === "failed") return;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** Colour the swatches from their data-colour (through the CSSOM: no inline style attributes, for a strict CSP). */
export function paintSwatches(root) {
  for (const el of root.querySelectorAll("[data-colour]")) {
    el.style.background = el.dataset.colour;
    if (el.dataset.opacity) el.style.opacity = el.dataset.opacity;
  }
  for (const el of root.querySelectorAll("[data-width]")) el.style.width = el.dataset.width;
}

/** The account of the result (the API's `summary`: the same statements as the PDF and the FHIR Observation). */
export function summaryHtml(summary) {
  if (!summary) return "";
  const items = (summary.statements || []).map((st) => `
    <div class="statement" data-key="${esc(st.key)}"><dt>${esc(st.title)}</dt><dd>${esc(st.text)}</dd></div>`).join("");
  return `<h2 id="summary-title">Result in brief</h2>
    <p class="summary-headline" id="summary-headline">${esc(summary.headline)}</p>
    <dl class="summary-statements" id="summary-statements">${items}</dl>`;
}

function statementText(summary, key) {
  return (summary?.statements || []).find((st) => st.key === key)?.text ?? null;
}

/** The finished analysis: the account above the ECG; diagnosis, segment list, where the noise went, overlay
 * toggle, robustness panel; segments onto the ECG. */
export async function showResult(analysis, viewer, els, models = null) {
  const result = analysis.result ?? analysis;
  const ex = result.explanation;
  if (!ex) {
    els.result.innerHTML = `<p class="muted">This analysis has no explanation.</p>`;
    return;
  }
  const summary = analysis.summary ?? result.summary ?? null;
  if (els.summary) {
    els.summary.innerHTML = summaryHtml(summary);
    els.summary.classList.toggle("hidden", !summary);
  }
  const dx = ex.diagnosis || {};
  const probs = Object.entries(dx.probabilities || {}).sort((a, b) => b[1] - a[1]);
  const adv = ex.adversarial;
  const segments = ex.segments || [];
  const others = (dx.findings || []).filter((f) => f !== dx.label);
  // The model's lead names drawn on the record's leads (MLII on II): the lists name the record's lead.
  const leadName = (lead) => viewer.recordLead(lead) ?? lead;
  const spans = adv?.flipped ? adv.spans || [] : [];
  const localText = statementText(summary, "local_flip") ?? (adv?.flipped
    ? `With targeted noise at ${adv.snr_db == null ? "–" : Number(adv.snr_db).toFixed(1)} dB SNR the classifier no longer reports ${dx.label} (it reports ${adv.label}).`
    : "No distortion within the query budget changed the diagnosis.");
  els.result.innerHTML = `
    <h2>Diagnosis</h2>
    <p><span class="diagnosis-label" id="diagnosis-label">${esc(dx.label)}</span>
      ${others.length ? `<span class="muted small" id="diagnosis-also"> · also reported: ${others.map(esc).join(", ")}</span>` : ""}</p>
    <div id="diagnosis-probabilities" aria-label="Class probabilities">${probs.map(([name, p]) => `
      <div class="prob-row${name === dx.label ? " is-label" : ""}"><span>${esc(name)}</span>
        <span class="prob-bar" aria-hidden="true"><span data-width="${(100 * p).toFixed(1)}%"></span></span>
        <span>${pct(p)}</span></div>`).join("")}</div>
    <p class="small muted result-meta">${esc(searchLabel(ex))}
      · ${ex.queries} classifier queries · ${Number(ex.elapsed_s).toFixed(1)} s
      · window ${Number(ex.start_s).toFixed(1)} s onward
      ${ex.fallback_reason ? `<br>Fallback: ${esc(ex.fallback_reason)}` : ""}</p>
    <h3>Targeted test</h3>
    <p id="adversarial-summary">${esc(localText)}</p>
    ${spans.length ? `<details id="noise-spans-box"><summary>Where the noise was added (${spans.length} stretch${spans.length === 1 ? "" : "es"})</summary>
      <ul class="plain small" id="noise-spans">${spans.map((sp) => `
        <li data-lead="${esc(sp.lead)}" data-start="${sp.start_s}" data-end="${sp.end_s}">lead <strong>${esc(leadName(sp.lead))}</strong>
          ${Number(sp.start_s).toFixed(2)}–${Number(sp.end_s).toFixed(2)} s · noise ${Number(sp.noise_rms_mv).toFixed(2)} mV RMS
          ${sp.snr_db == null ? "" : `· ${esc(formatDb(sp.snr_db))} SNR there`}</li>`).join("")}</ul></details>` : ""}
    <div class="row hidden" id="exports">
      <button type="button" class="btn btn-secondary btn-small" data-export="report.pdf">PDF report</button>
      <button type="button" class="btn btn-secondary btn-small" data-export="fhir">FHIR Observation</button>
      <span class="error small" id="export-error" role="alert"></span>
    </div>
    <fieldset id="overlay-toggle"><legend>Overlay on the ECG (only where the noise was added)</legend>
      <div class="checks">
        <label><input type="radio" name="overlay" value="none" checked> None</label>
        <label><input type="radio" name="overlay" value="adversarial" ${adv?.signal ? "" : "disabled"}>
          <span class="swatch" data-colour="${OVERLAY_COLOURS.adversarial}"></span>Minimal adversarial signal</label>
        <label><input type="radio" name="overlay" value="noise" ${adv?.noise ? "" : "disabled"}>
          <span class="swatch" data-colour="${OVERLAY_COLOURS.noise}"></span>Added noise only</label>
      </div></fieldset>
    <h3>Critical segments <span class="muted small">(${segments.length}, most critical first: where the decision rests)</span></h3>
    <div class="legend" aria-label="Distortion colours">${[...new Set(segments.map((s) => s.distortion))].map((k) => `
      <span><span class="swatch" data-colour="${distortionColour(k)}"></span> ${esc(distortionLabel(k))}</span>`).join("")}
      <span class="muted">· stronger shading = higher score</span></div>
    ${segments.length ? `<ul class="segment-list" id="segment-list">${segments.map((s, i) => `
      <li><button type="button" data-index="${i}" aria-pressed="false"
        aria-label="Show segment ${i + 1}: lead ${esc(leadName(s.lead))}, ${s.start_s.toFixed(2)} to ${s.end_s.toFixed(2)} seconds, ${esc(distortionLabel(s.distortion))}, score ${Number(s.score).toFixed(2)}">
        <span class="swatch" data-colour="${distortionColour(s.distortion)}" data-opacity="${(0.35 + 0.65 * s.score).toFixed(2)}"></span>
        <strong title="${esc(leadName(s.lead) === s.lead ? s.lead : `the model's ${s.lead}, shown on the record's ${leadName(s.lead)}`)}">${esc(leadName(s.lead))}</strong>
        <span>${s.start_s.toFixed(2)}–${s.end_s.toFixed(2)} s · ${esc(distortionLabel(s.distortion))}</span>
        <span>score ${Number(s.score).toFixed(2)}</span></button></li>`).join("")}</ul>`
      : `<p class="muted">No critical segments were found.</p>`}`;
  paintSwatches(els.result);

  const list = els.result.querySelector("#segment-list");
  list?.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-index]");
    if (!button) return;
    for (const b of list.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b === button));
    viewer.focusSegment(Number(button.dataset.index));
  });
  els.result.querySelector("#overlay-toggle").addEventListener("change", (e) => {
    if (e.target.name === "overlay") viewer.setOverlay(e.target.value);
  });
  bindExports(els.result, analysis.id);
  // The record page draws the timeline strip from the same analysis (record.js).
  els.result.dispatchEvent(new CustomEvent("analysis-shown", { bubbles: true, detail: analysis }));
  await viewer.setSegments(segments, ex);
  await viewer.showExplained(Number(ex.start_s) || 0);
  const card = models ? unwrapList(models).items.find((m) => m.name === analysis.model)?.card : null;
  const label = result.robustness?.label ?? dx.label;
  await renderRobustness(els.robustness, result.robustness, { threshold: card?.thresholds?.[label] ?? null,
    summary });
}

/** "−1.8 dB" with a true minus sign. */
export function formatDb(value) {
  const text = Number(value).toFixed(1);
  return `${text.startsWith("-") ? `−${text.slice(1)}` : text} dB`;
}


/** The PDF report and FHIR Observation downloads, shown when the service offers them. */
async function bindExports(target, id) {
  const box = target.querySelector("#exports");
  if (!box || !(await apiOffers("GET", "/analyses/{analysis_id}/report.pdf"))) return;
  box.classList.remove("hidden");
  box.addEventListener("click", async (e) => {
    const button = e.target.closest("button[data-export]");
    if (!button) return;
    const kind = button.dataset.export;
    button.disabled = true;
    box.querySelector("#export-error").textContent = "";
    try {
      await downloadFile(`/analyses/${encodeURIComponent(id)}/${kind}`,
        kind === "fhir" ? `ecglens-${id}.fhir.json` : `ecglens-${id}.pdf`);
    } catch (err) {
      box.querySelector("#export-error").textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });
}

// Who chose the search's actions (ex.method) and which action found the flip (extra.findings[0].found_by,
// "+redraw" when redrawn noise realisations then made it quieter).
const METHOD = {
  "agent": "Black-box search by the learned agent",
  "anytime": "Black-box search by the anytime agent (fixed order of actions)",
};
const FOUND_BY = {
  "scan": "flip found by a scan of the top segments",
  "broad_top": "flip found by noise over the top segments, then thinned out",
  "broad_all": "flip found by noise over the whole strip, then thinned out",
};
function searchLabel(ex) {
  const base = METHOD[ex.method] ?? `Black-box search (${ex.method})`;
  const found = ex.extra?.findings?.[0]?.found_by ?? "";
  const stage = FOUND_BY[found.split("+")[0]];
  if (!stage) return base;
  return `${base}, ${stage}${found.endsWith("+redraw") ? " and made quieter" : ""}`;
}
