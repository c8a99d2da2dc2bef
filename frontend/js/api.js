// The one place that talks to the REST API (/api/v1): the API key, the Bearer header, and errors in plain words.
// The key lives in sessionStorage only (gone when the tab closes; sign-out clears it).

export const API_BASE = "/api/v1";
const KEY_STORAGE = "ecglens.apiKey";
const WHO_STORAGE = "ecglens.who";

/** An HTTP error with the service's message (FastAPI's `detail`) turned into one readable sentence. */
export class ApiError extends Error {
  constructor(status, message, detail) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
  }
}

export function getKey() { return sessionStorage.getItem(KEY_STORAGE); }
export function setKey(key) { sessionStorage.setItem(KEY_STORAGE, key); }

/** Who is signed in: {name, role, id} as the service reported it, or null. */
export function getWho() {
  const raw = sessionStorage.getItem(WHO_STORAGE);
  return raw ? JSON.parse(raw) : null;
}
export function setWho(who) { sessionStorage.setItem(WHO_STORAGE, JSON.stringify(who)); }

/** Forget the key and who it belongs to. */
export function signOut() {
  sessionStorage.removeItem(KEY_STORAGE);
  sessionStorage.removeItem(WHO_STORAGE);
}

function authHeaders(extra = {}) {
  const key = getKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

/** Readable text from a FastAPI error body: `detail` may be a string, an object or a validation list. */
export function describeError(status, body) {
  const detail = body && typeof body === "object" ? (body.detail ?? body.error ?? body.message) : body;
  if (typeof detail === "string" && detail.trim()) return detail;
  if (Array.isArray(detail) && detail.length) {
    return detail.map((d) => {
      const where = Array.isArray(d.loc) ? d.loc.filter((p) => p !== "body").join(".") : "";
      return where ? `${where}: ${d.msg}` : d.msg;
    }).join("; ");
  }
  if (detail && typeof detail === "object" && detail.message) return String(detail.message);
  return {
    401: "The API key was not accepted. Sign in again.",
    403: "Your role is not allowed to do this.",
    404: "Not found.",
    413: "The upload is larger than the server accepts.",
    422: "The server could not read what was sent.",
  }[status] || `The server answered ${status}.`;
}

async function parseBody(response) {
  const type = response.headers.get("content-type") || "";
  if (type.includes("application/json")) return response.json();
  return response.text();
}

/**
 * Call the API. `path` is relative to /api/v1. `json` is sent as a JSON body; `query` becomes the query string
 * (empty values dropped). Resolves with the parsed body; rejects with ApiError. A 401 signs out and announces it.
 */
export async function api(path, { method = "GET", json, query, signal, accept } = {}) {
  const url = new URL(API_BASE + path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const headers = authHeaders(accept ? { Accept: accept } : {});
  const init = { method, headers, signal };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "The server cannot be reached. Check your connection and try again.");
  }
  const body = await parseBody(response);
  if (!response.ok) {
    if (response.status === 401) window.dispatchEvent(new CustomEvent("ecglens:unauthorized"));
    throw new ApiError(response.status, describeError(response.status, body), body);
  }
  return body;
}

/** Fetch text (e.g. CSV) with the auth header; resolves with the text. */
export async function apiText(path, query) {
  const url = new URL(API_BASE + path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const response = await fetch(url, { headers: authHeaders() });
  const text = await response.text();
  if (!response.ok) {
    let body = text;
    try { body = JSON.parse(text); } catch { /* plain text error */ }
    throw new ApiError(response.status, describeError(response.status, body), body);
  }
  return text;
}

/**
 * Upload files as one multipart POST to /records with XMLHttpRequest (fetch has no upload progress).
 * onProgress(fraction in [0, 1]) is called as bytes leave the browser. Resolves with the created record(s).
 */
export function uploadRecord(files, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", API_BASE + "/records");
    const key = getKey();
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener("load", () => {
      let body = xhr.responseText;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) {
        if (onProgress) onProgress(1);
        resolve(body);
      } else {
        if (xhr.status === 401) window.dispatchEvent(new CustomEvent("ecglens:unauthorized"));
        reject(new ApiError(xhr.status, describeError(xhr.status, body), body));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "The upload was interrupted: the server cannot be reached.")));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "The upload was cancelled.")));
    xhr.send(form);
  });
}

/**
 * Server-sent events with the Authorization header: EventSource cannot send headers, so read the
 * text/event-stream body with fetch + ReadableStream and parse it here (the WHATWG event-stream format:
 * `event:`, `data:` (joined by newlines), `id:`, blank line ends an event; lines starting with ':' are comments).
 * Calls onEvent({event, data, id}) with `data` JSON-parsed when it is JSON. Resolves when the stream ends.
 */
export async function streamEvents(path, onEvent, { signal } = {}) {
  const response = await fetch(API_BASE + path, { headers: authHeaders({ Accept: "text/event-stream" }), signal });
  if (!response.ok) {
    const body = await parseBody(response);
    throw new ApiError(response.status, describeError(response.status, body), body);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { event: "message", data: [], id: null };
  const dispatch = () => {
    if (event.data.length) {
      const text = event.data.join("\n");
      let data = text;
      try { data = JSON.parse(text); } catch { /* plain text data */ }
      onEvent({ event: event.event, data, id: event.id });
    }
    event = { event: "message", data: [], id: null };
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();  // the last piece may be an incomplete line
    for (const line of lines) {
      if (line === "") { dispatch(); continue; }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value2 = colon === -1 ? "" : line.slice(colon + 1);
      if (value2.startsWith(" ")) value2 = value2.slice(1);
      if (field === "event") event.event = value2;
      else if (field === "data") event.data.push(value2);
      else if (field === "id") event.id = value2;
    }
  }
  dispatch();
}

/** Fetch a file (PDF, FHIR JSON) with the auth header and hand it to the browser as a download. */
export async function downloadFile(path, filename) {
  const response = await fetch(API_BASE + path, { headers: authHeaders() });
  if (!response.ok) {
    const body = await parseBody(response);
    throw new ApiError(response.status, describeError(response.status, body), body);
  }
  saveBlob(await response.blob(), filename);
}

/** Save text as a file download (CSV export). */
export function saveText(text, filename, type = "text/csv") {
  saveBlob(new Blob([text], { type }), filename);
}

function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** Escape text for innerHTML templates. */
export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

/** Show a short message in the live region. */
export function toast(message, ms = 4000) {
  const el = document.getElementById("toast");
  if (!el) return;
  el.textContent = message;
  clearTimeout(toast._t);
  toast._t = setTimeout(() => { el.textContent = ""; }, ms);
}

let specPromise = null;
/** The service's public OpenAPI document (fetched once), to learn which optional features it offers. */
export function apiSpec() {
  if (!specPromise) {
    specPromise = fetch("/openapi.json").then((r) => (r.ok ? r.json() : {})).catch(() => ({}));
  }
  return specPromise;
}

/** Whether `method path` (under /api/v1) exists, and if `param` is given, whether it takes that query parameter. */
export async function apiOffers(method, path, param = null) {
  const op = (await apiSpec()).paths?.[API_BASE + path]?.[method.toLowerCase()];
  if (!op) return false;
  return param ? (op.parameters || []).some((p) => p.name === param) : true;
}
