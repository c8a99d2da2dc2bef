// The router: hash routes (#/records, #/records/{id}, #/upload, #/audit, #/signin) so the static server needs no
// fallback rules. Without a key every route shows the sign-in form.
import { getKey, getWho, signOut, toast } from "./api.js";
import * as audit from "./audit.js";
import * as record from "./record.js";
import * as records from "./records.js";
import * as signin from "./signin.js";
import * as upload from "./upload.js";

const main = document.getElementById("main");
let cleanup = null;

function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: Object.fromEntries(new URLSearchParams(query)) };
}

function showChrome(who) {
  const signedIn = Boolean(getKey());
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("who").hidden = !signedIn;
  if (!signedIn) return;
  const name = document.getElementById("who-name");
  name.innerHTML = "";
  name.append(document.createTextNode(who?.name || "signed in"));
  if (who?.role) {
    const role = document.createElement("span");
    role.className = "role";
    role.textContent = who.role;
    name.append(" ", role);
  }
  // The audit page is for auditors and admins; other roles do not see the link (the API refuses them anyway).
  const auditLink = document.querySelector('[data-nav="audit"]');
  auditLink.hidden = Boolean(who?.role) && !["auditor", "admin"].includes(who.role);
  // An auditor audits: the audit page and records' metadata (reached from it), not the clinical views.
  const auditor = who?.role === "auditor";
  document.querySelector('[data-nav="upload"]').hidden = auditor;
  document.querySelector('[data-nav="records"]').hidden = auditor;
  document.querySelector(".brand").setAttribute("href", auditor ? "#/audit" : "#/records");
}

function markNav(section) {
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function route() {
  if (typeof cleanup === "function") cleanup();
  cleanup = null;
  const { parts, params } = parseHash();
  const who = getWho();
  showChrome(who);
  if (!getKey()) {
    markNav(null);
    document.title = "Sign in · ECG Lens";
    signin.render(main, {
      reason: params.reason,
      onSignedIn: (w) => {
        const next = w?.role === "auditor" ? "#/audit" : "#/records";
        navigate(next);
      },
    });
    return;
  }
  const [section = "records", id] = parts;
  markNav(section === "signin" ? "records" : section);
  main.focus({ preventScroll: true });
  if (who?.role === "auditor" && (section === "upload" || (section === "records" && !id))) {
    window.location.hash = "#/audit";
    return;
  }
  if (section === "upload") {
    document.title = "Upload · ECG Lens";
    upload.render(main);
  } else if (section === "audit") {
    document.title = "Audit · ECG Lens";
    await audit.render(main, params);
  } else if (section === "records" && id) {
    document.title = "Record · ECG Lens";
    cleanup = await record.render(main, id);
  } else {
    document.title = "Records · ECG Lens";
    await records.render(main, params);
  }
}

document.getElementById("signout").addEventListener("click", () => {
  signOut();
  toast("Signed out. The API key was removed from this tab.");
  navigate("#/signin");
});

function navigate(hash) {
  if (window.location.hash === hash) route(); else window.location.hash = hash;
}

window.addEventListener("ecglens:unauthorized", () => {
  if (!getKey()) return;
  signOut();
  window.location.hash = "#/signin?reason=" + encodeURIComponent("Your API key is no longer accepted. Sign in again.");
});
window.addEventListener("hashchange", route);
window.addEventListener("unhandledrejection", (e) => {
  // Errors are shown where they happen; this only keeps an unexpected one from going unnoticed.
  if (e.reason?.name === "AbortError") { e.preventDefault(); return; }
  toast(e.reason?.message || String(e.reason));
});
route();
