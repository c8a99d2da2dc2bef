// Which registered models can analyse this record (GET /records/{id}/models): the model picker marks the ones
// that cannot, and when the chosen one cannot, says why and what would, and holds the Start button back. The
// service answers the same sentence if an analysis is asked for anyway.
import { api, esc } from "./api.js";

/** The notice for one model's fit entry: "" when it fits. */
export function fitNotice(fit) {
  if (!fit || fit.fits) return "";
  return `<p class="alert" role="alert" id="model-fit-reason"><strong>${esc(fit.model)} cannot analyse this record:</strong>
    ${esc(fit.reason || "its leads do not match")}.<br>${esc(fit.advice || "")}</p>`;
}

/** Watch the analysis form in `panel` for `record`; returns a promise of the fit list (or null on failure). */
export async function mountFitNotice(panel, record) {
  let fits;
  try {
    fits = (await api(`/records/${encodeURIComponent(record.id)}/models`)).data || [];
  } catch {
    return null;  // an older server: the analysis answers for itself
  }
  const byName = Object.fromEntries(fits.map((f) => [f.model, f]));
  const box = document.createElement("div");
  box.id = "model-fit";
  const apply = () => {
    const select = panel.querySelector("#analysis-model");
    const start = panel.querySelector("#analysis-start");
    if (!select) return;
    for (const option of select.options) {
      const fit = byName[option.value];
      if (fit && !fit.fits && !option.textContent.includes("(does not fit")) option.textContent += " (does not fit this record)";
    }
    const fit = byName[select.value];
    if (box.dataset.model !== select.value) {  // writing the box is itself a mutation: only when it changes
      box.dataset.model = select.value;
      box.innerHTML = fitNotice(fit);
    }
    if (start) start.disabled = Boolean(fit && !fit.fits);
  };
  const place = () => {
    const note = panel.querySelector("#analysis-model-note");
    if (note && box.parentNode !== note.parentNode) note.after(box);
    apply();
  };
  panel.addEventListener("change", (e) => { if (e.target.id === "analysis-model") apply(); });
  // The form fills its model list when GET /models answers: follow it.
  new MutationObserver(place).observe(panel, { childList: true, subtree: true });
  place();
  return fits;
}
