// Audit page (auditor and admin roles): the append-only event log, filterable, exportable as CSV, with the
// hash chain's verification status from GET /audit/verify.
import { api, apiText, esc, saveText } from "./api.js";
import { unwrapList } from "./records.js";

const PAGE_SIZE = 200;
const COLUMNS = [
  ["seq", "#"], ["at", "Time (UTC)"], ["actor_name", "Actor"], ["role", "Role"], ["action", "Action"],
  ["object_type", "Object"], ["object_id", "Object id"], ["record_id", "Record"], ["client", "Client"],
  ["status", "Status"],
];
const FILTERS = ["actor", "action", "record", "since", "until"];

function filterQuery(params) {
  const q = {};
  for (const k of FILTERS) if (params[k]) q[k] = params[k];
  // The date inputs give whole days: "until" includes that day (the API's until is exclusive).
  if (q.until && /^\d{4}-\d{2}-\d{2}$/.test(q.until)) {
    const d = new Date(`${q.until}T00:00:00Z`);
    d.setUTCDate(d.getUTCDate() + 1);
    q.until = d.toISOString().slice(0, 10);
  }
  return q;
}

/** Render the audit page into `root`; `params` are the hash's query (filters and page). */
export async function render(root, params = {}) {
  const page = Math.max(1, Number(params.page) || 1);
  root.innerHTML = `
    <section class="panel" aria-labelledby="audit-title">
      <div class="row"><h1 id="audit-title">Audit log</h1><span class="spacer"></span>
        <span id="chain-status" class="chain" aria-live="polite">Checking the chain…</span></div>
      <form id="audit-filters" class="audit-filters" aria-label="Filter events">
        <div class="field"><label for="f-actor">Actor (key name or id)</label>
          <input id="f-actor" name="actor" value="${esc(params.actor || "")}"></div>
        <div class="field"><label for="f-action">Action</label>
          <input id="f-action" name="action" list="audit-actions" value="${esc(params.action || "")}" placeholder="e.g. record.read">
          <datalist id="audit-actions">${["record.create", "record.list", "record.read", "record.signal", "record.delete",
            "analysis.create", "analysis.list", "analysis.read", "analysis.events", "audit.read", "audit.verify",
            "key.create", "key.revoke", "model.create"].map((a) => `<option value="${a}">`).join("")}</datalist></div>
        <div class="field"><label for="f-record">Record id</label>
          <input id="f-record" name="record" value="${esc(params.record || "")}"></div>
        <div class="field"><label for="f-since">From (UTC date)</label>
          <input id="f-since" name="since" type="date" value="${esc(params.since || "")}"></div>
        <div class="field"><label for="f-until">Until (UTC date)</label>
          <input id="f-until" name="until" type="date" value="${esc(params.until || "")}"></div>
        <button class="btn" type="submit">Filter</button>
        <button class="btn btn-secondary" type="button" id="audit-clear">Clear</button>
        <span class="spacer"></span>
        <button class="btn btn-secondary" type="button" id="audit-csv">Export CSV</button>
      </form>
      <div id="audit-body" style="margin-top:.75rem" aria-live="polite"><p class="muted">Loading…</p></div>
    </section>`;
  const form = root.querySelector("#audit-filters");
  const go = (filters, p = 1) => {
    const q = new URLSearchParams();
    for (const k of FILTERS) if (filters[k]) q.set(k, filters[k]);
    if (p > 1) q.set("page", p);
    window.location.hash = `#/audit${q.toString() ? `?${q}` : ""}`;
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    go(Object.fromEntries(new FormData(form)));
  });
  root.querySelector("#audit-clear").addEventListener("click", () => go({}));
  root.querySelector("#audit-csv").addEventListener("click", async (e) => {
    const button = e.currentTarget;
    button.disabled = true;
    try {
      const csv = await apiText("/audit", { ...filterQuery(params), format: "csv", limit: 100000 });
      saveText(csv, `ecglens-audit-${new Date().toISOString().slice(0, 10)}.csv`);
    } catch (err) {
      root.querySelector("#audit-body").insertAdjacentHTML("afterbegin", `<p class="alert" role="alert">${esc(err.message)}</p>`);
    } finally {
      button.disabled = false;
    }
  });

  showChain(root.querySelector("#chain-status"));
  const target = root.querySelector("#audit-body");
  let list;
  try {
    list = unwrapList(await api("/audit", { query: { ...filterQuery(params), skip: (page - 1) * PAGE_SIZE, limit: PAGE_SIZE } }));
  } catch (err) {
    target.innerHTML = `<p class="alert" role="alert">${esc(err.message)}</p>`;
    return;
  }
  const pages = Math.max(1, Math.ceil(list.count / PAGE_SIZE));
  target.innerHTML = list.items.length ? `
    <div class="audit-table-wrap">
    <table class="data" id="audit-table">
      <thead><tr>${COLUMNS.map(([, title]) => `<th scope="col">${title}</th>`).join("")}</tr></thead>
      <tbody>${list.items.map((ev) => `<tr data-seq="${esc(ev.seq)}" class="${ev.status >= 400 ? "refused" : ""}">${COLUMNS.map(([k]) => {
        let v = ev[k];
        if (k === "at") v = String(v || "").replace("T", " ").slice(0, 19);
        if (k === "actor_name") v = v || ev.actor_key_id || "anonymous";
        if (k === "status") return `<td class="${v >= 400 ? "error" : ""}">${esc(v)}</td>`;
        if (k === "record_id" && v) return `<td><a href="#/records/${encodeURIComponent(v)}" title="${esc(v)}">${esc(String(v).slice(0, 8))}…</a></td>`;
        if (k === "object_id" && v && String(v).length > 12) return `<td title="${esc(v)}">${esc(String(v).slice(0, 12))}…</td>`;
        return `<td>${esc(v ?? "")}</td>`;
      }).join("")}</tr>`).join("")}</tbody>
    </table></div>
    <nav class="pager" aria-label="Pages">
      <button class="btn btn-secondary btn-small" id="audit-prev" ${page <= 1 ? "disabled" : ""}>Previous</button>
      <span id="audit-count">Page ${page} of ${pages} · ${list.count} event${list.count === 1 ? "" : "s"}</span>
      <button class="btn btn-secondary btn-small" id="audit-next" ${page >= pages ? "disabled" : ""}>Next</button>
    </nav>` : `<p class="muted" id="audit-count">No events match these filters.</p>`;
  target.querySelector("#audit-prev")?.addEventListener("click", () => go(params, page - 1));
  target.querySelector("#audit-next")?.addEventListener("click", () => go(params, page + 1));
}

async function showChain(el) {
  try {
    const chain = await api("/audit/verify");
    el.className = `chain ${chain.ok ? "ok" : "bad"}`;
    el.dataset.ok = String(chain.ok);
    el.innerHTML = chain.ok
      ? `<span aria-hidden="true">✔</span> Chain intact · ${esc(chain.events)} events verified`
      : `<span aria-hidden="true">✖</span> Chain broken at event #${esc(chain.first_bad_seq)}: ${esc(chain.reason || "")}`;
  } catch (err) {
    el.className = "chain bad";
    el.textContent = `Chain status unavailable: ${err.message}`;
  }
}
