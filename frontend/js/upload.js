// Upload view: drag-and-drop (files or folders) or file picker, several files at once. WFDB files that share a
// record name (100.hea + 100.dat [+ 100.atr]) or that a header names (A00001.hea lists A00001.mat) travel
// together; every other file (zip, EDF, CSV, JSON, DICOM, XML) alone. Each group is its own POST /records with its
// own progress bar, so the reader's error lands beside the file that caused it. The server groups the same way
// (and groups the files inside a zip).
import { ApiError, esc, uploadRecord } from "./api.js";

// Signal files and the WFDB annotators PhysioNet databases use (ecglens.formats.annotations.ANNOTATION_EXTENSIONS).
const SIGNAL_PARTS = ["dat", "mat", "xyz"];
export const ANNOTATION_EXTENSIONS = ["atr", "ari", "ann", "all", "man", "qrs", "ecg", "pu", "pu0", "pu1", "apn",
  "st", "sta", "stb", "stc", "wqrs", "gqrs", "sqrs", "xqrs", "jqrs", "cnt", "event", "arou", "resp", "trigger"];
const WFDB_PARTS = new Set(["hea", "xws", ...SIGNAL_PARTS, ...ANNOTATION_EXTENSIONS]);
const ACCEPT = [".hea", ...SIGNAL_PARTS.map((e) => `.${e}`), ...ANNOTATION_EXTENSIONS.map((e) => `.${e}`),
  ".zip", ".edf", ".bdf", ".csv", ".tsv", ".txt", ".json", ".dcm", ".xml"].join(",");

function extension(name) {
  const dot = name.lastIndexOf(".");
  return dot === -1 ? "" : name.slice(dot + 1).toLowerCase();
}

/** The file names each WFDB header names on its signal lines (and segment lines): {"A00001.hea": ["A00001.mat"]}. */
export async function headerNames(files) {
  const out = {};
  for (const file of files) {
    if (extension(file.name) !== "hea" || file.size > 1 << 20) continue;
    let text;
    try { text = await file.text(); } catch { continue; }
    const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
    if (!lines.length) continue;
    const [name, count] = lines[0].split(/\s+/);
    const segments = name.includes("/");
    const n = segments ? Number(name.split("/")[1]) : Number(count);
    out[file.name] = lines.slice(1, 1 + (Number.isFinite(n) ? n : 0))
      .map((l) => l.split(/\s+/)[0]).filter((f) => f && f !== "~")
      .map((f) => (segments ? `${f}.hea` : f));
  }
  return out;
}

/**
 * Split picked files into upload groups: WFDB parts by record name, and the files a header names (`named`, from
 * `headerNames`) with that header; everything else one file per group.
 */
export function groupFiles(files, named = {}) {
  const wfdb = new Map();
  const groups = [];
  const owner = new Map();  // file name -> the header's stem that names it
  for (const [header, names] of Object.entries(named)) {
    for (const n of names) if (!owner.has(n)) owner.set(n, header.slice(0, -4));
  }
  for (const file of files) {
    const ext = extension(file.name);
    if (WFDB_PARTS.has(ext) || owner.has(file.name)) {
      const stem = owner.get(file.name) ?? file.name.slice(0, file.name.length - ext.length - 1);
      if (!wfdb.has(stem)) {
        const group = { label: stem, files: [] };
        wfdb.set(stem, group);
        groups.push(group);
      }
      wfdb.get(stem).files.push(file);
    } else {
      groups.push({ label: file.name, files: [file] });
    }
  }
  return groups;
}

function recordsFrom(body) {
  if (Array.isArray(body)) return body;
  if (body && Array.isArray(body.data)) return body.data;
  if (body && Array.isArray(body.records)) return body.records;
  if (body && Array.isArray(body.items)) return body.items;
  return body ? [body] : [];
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** Render the upload view into `root`. */
export function render(root) {
  root.innerHTML = `
    <section class="panel" aria-labelledby="upload-title">
      <h1 id="upload-title">Upload ECG records</h1>
      <p class="muted">WFDB (the .hea header with its .dat or .mat signal files, and annotation files such as
        .atr or .qrs), a .zip or a folder of records, EDF, CSV, JSON, DICOM or HL7 aECG XML. You can choose several
        files at once: the files of one record are sent together.</p>
      <label class="dropzone" id="dropzone" tabindex="0" role="button" aria-describedby="drop-help">
        <strong>Drop files here</strong>
        <span id="drop-help" class="muted">or press Enter to choose files</span>
        <input id="file-input" type="file" multiple accept="${ACCEPT}" class="hidden">
      </label>
      <ul class="upload-list" id="upload-list" aria-label="Uploads"></ul>
    </section>`;
  const zone = root.querySelector("#dropzone");
  const input = root.querySelector("#file-input");
  const list = root.querySelector("#upload-list");

  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      input.click();
    }
  });
  input.addEventListener("change", () => {
    startUploads([...input.files], list);
    input.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => {
      e.preventDefault();
      zone.classList.add("dragover");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("dragover"));
  }
  zone.addEventListener("drop", async (e) => {
    e.preventDefault();
    startUploads(await droppedFiles(e.dataTransfer), list);
  });
}

/** The files of a drop, folders included (a dropped PhysioNet folder uploads every record in it). */
export async function droppedFiles(transfer) {
  const entries = [...(transfer.items || [])].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.some((e) => e.isDirectory)) return [...transfer.files];
  const out = [];
  const walk = async (entry) => {
    if (entry.isFile) {
      out.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
    } else if (entry.isDirectory && !entry.name.startsWith(".")) {
      const reader = entry.createReader();
      for (;;) {  // readEntries answers in batches until it answers none
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child);
      }
    }
  };
  for (const entry of entries) await walk(entry);
  return out.filter((f) => !f.name.startsWith("."));
}

/** Upload every group one after another (the server reads each record as it arrives). */
export async function startUploads(files, list) {
  const groups = groupFiles(files, await headerNames(files));
  const rows = groups.map((group) => addRow(group, list));
  for (let i = 0; i < groups.length; i += 1) {
    await uploadGroup(groups[i], rows[i]);
  }
}

function addRow(group, list) {
  const li = document.createElement("li");
  li.className = "upload-item";
  li.dataset.group = group.label;
  const total = group.files.reduce((s, f) => s + f.size, 0);
  li.innerHTML = `
    <div><div class="files">${group.files.map((f) => esc(f.name)).join(" + ")}</div>
      <div class="muted small">${bytes(total)}</div></div>
    <progress max="100" value="0" aria-label="Upload progress for ${esc(group.label)}"></progress>
    <div class="state" aria-live="polite">Waiting…</div>`;
  list.append(li);
  return li;
}

async function uploadGroup(group, row) {
  const bar = row.querySelector("progress");
  const state = row.querySelector(".state");
  state.textContent = "Uploading…";
  try {
    const body = await uploadRecord(group.files, (fraction) => {
      bar.value = Math.round(fraction * 100);
      if (fraction >= 1) state.textContent = "Reading the record…";
    });
    bar.value = 100;
    const records = recordsFrom(body);
    row.classList.add("done");
    state.className = "state ok";
    state.innerHTML = records.map((r) => {
      const what = [r.name || r.filename, r.leads ? `${r.leads.length} leads` : "",
        r.duration_s ? `${Number(r.duration_s).toFixed(1)} s` : ""].filter(Boolean).join(", ");
      return `Uploaded: <a href="#/records/${encodeURIComponent(r.id)}">${esc(what || r.id)}</a>`;
    }).join("<br>") || "Uploaded.";
  } catch (err) {
    row.classList.add("failed");
    bar.value = 0;
    state.className = "state error";
    state.setAttribute("role", "alert");
    const message = err instanceof ApiError ? err.message : String(err);
    state.textContent = `Not uploaded: ${message}`;
  }
}
