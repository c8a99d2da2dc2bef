// Records list: paginated, searchable by name and upload date, with each record's latest analysis status.
import { api, esc } from "./api.js";

const PAGE_SIZE = 20;

/** The list the service returned, whatever its wrapper ({items, count} | {records, total} | [...]). */
export function unwrapList(body) {
  if (Array.isArray(body)) return { items: body, count: body.length };
  const items = body.data ?? body.items ?? body.records ?? body.events ?? body.analyses ?? [];
  return { items, count: body.count ?? body.total ?? items.length };
}

/** "2026-11-24 06:29 UTC": dates are shown and searched in UTC, as the service stores them. */
export function formatDate(value) {
  if (!value) return "";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : `${d.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

export function statusBadge(status, progress) {
  const s = status || "none";
  const text = s === "none" ? "not analysed" : s === "running" && progress != null ? `running ${Math.round(progress)}%` : s;
  return `<span class="status status-${esc(s)}">${esc(text)}</span>`;
}

function latestStatus(record) {
  const latest = record.latest_analysis;
  return latest ? { status: latest.status, progress: latest.progress } : { status: null, progress: null };
}

/** Render the records list into `root`; `params` are the hash's query (q, since, until, page). */
export async function render(root, params = {}) {
  const page = Math.max(1, Number(params.page) || 1);
  root.innerHTML = `
    <section class="panel" aria-labelledby="records-title">
      <div class="row"><h1 id="records-title">Records</h1><span class="spacer"></span>
        <a class="btn" href="#/upload">Upload records</a></div>
      <form id="records-search" class="row" role="search" aria-label="Search records">
        <div class="field"><label for="q">Name</label>
          <input id="q" name="q" type="search" value="${esc(params.q || "")}" placeholder="e.g. 100"></div>
        <div class="field"><label for="since">Uploaded from (UTC)</label>
          <input id="since" name="since" type="date" value="${esc(params.since || "")}"></div>
        <div class="field"><label for="until">Uploaded until (UTC)</label>
          <input id="until" name="until" type="date" value="${esc(params.until || "")}"></div>
        <div class="field"><span>&nbsp;</span><button class="btn" type="submit">Search</button></div>
      </form>
      <div id="records-body" aria-live="polite"><p class="muted">Loading…</p></div>
    </section>`;
  root.querySelector("#records-search").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    const query = new URLSearchParams();
    for (const k of ["q", "since", "until"]) if (form.get(k)) query.set(k, form.get(k));
    window.location.hash = `#/records${query.toString() ? `?${query}` : ""}`;
  });

  const target = root.querySelector("#records-body");
  let list;
  try {
    list = await fetchRecords(params, page);
  } catch (err) {
    target.innerHTML = `<p class="alert" role="alert">${esc(err.message)}</p>`;
    return;
  }
  if (!list.items.length) {
    target.innerHTML = `<p class="muted">No records${params.q || params.since || params.until ? " match this search" : " yet"}.
      <a href="#/upload">Upload one</a>.</p>`;
    return;
  }
  const pages = Math.max(1, Math.ceil(list.count / PAGE_SIZE));
  target.innerHTML = `
    <table class="data" id="records-table">
      <caption class="hidden">Records, page ${page} of ${pages}</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Format</th><th scope="col">Leads</th>
        <th scope="col">Rate</th><th scope="col">Duration</th><th scope="col">Uploaded</th>
        <th scope="col">Latest analysis</th></tr></thead>
      <tbody>${list.items.map((r) => {
        const { status, progress } = latestStatus(r);
        const leads = Array.isArray(r.leads) ? r.leads : [];
        return `<tr data-record-id="${esc(r.id)}">
          <td><a href="#/records/${encodeURIComponent(r.id)}">${esc(r.name || r.filename || r.id)}</a></td>
          <td>${esc(r.format || "")}</td>
          <td title="${esc(leads.join(", "))}">${leads.length > 4 ? `${leads.length} leads` : esc(leads.join(", "))}</td>
          <td>${r.fs ? `${esc(Number(r.fs).toFixed(0))} Hz` : ""}</td>
          <td>${r.duration_s != null ? esc(formatDuration(r.duration_s)) : ""}</td>
          <td>${esc(formatDate(r.created_at))}</td>
          <td>${statusBadge(status, progress)}</td></tr>`;
      }).join("")}</tbody>
    </table>
    <nav class="pager" aria-label="Pages">
      <button class="btn btn-secondary btn-small" id="prev-page" ${page <= 1 ? "disabled" : ""}>Previous</button>
      <span>Page ${page} of ${pages} · ${list.count} record${list.count === 1 ? "" : "s"}</span>
      <button class="btn btn-secondary btn-small" id="next-page" ${page >= pages ? "disabled" : ""}>Next</button>
    </nav>`;
  const go = (p) => {
    const query = new URLSearchParams();
    for (const k of ["q", "since", "until"]) if (params[k]) query.set(k, params[k]);
    query.set("page", p);
    window.location.hash = `#/records?${query}`;
  };
  target.querySelector("#prev-page").addEventListener("click", () => go(page - 1));
  target.querySelector("#next-page").addEventListener("click", () => go(page + 1));
}

/** One page of records matching the search (the service filters), each with its latest analysis. */
async function fetchRecords(params, page) {
  const until = params.until ? `${params.until}T23:59:59.999999Z` : undefined;
  const since = params.since ? `${params.since}T00:00:00Z` : undefined;
  return unwrapList(await api("/records", {
    query: { q: params.q, since, until, limit: PAGE_SIZE, skip: (page - 1) * PAGE_SIZE } }));
}

export function formatDuration(seconds) {
  const s = Number(seconds);
  if (s < 120) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}
