// Sign-in view: paste an API key; it is checked against the service, then kept in sessionStorage.
import { api, ApiError, apiOffers, esc, getKey, setKey, setWho, signOut } from "./api.js";

/**
 * Ask the service who this key belongs to: {id, name, role} from GET /keys/me. A service without that route
 * (checked in its public OpenAPI document, so no 404 is provoked) is asked GET /models, which any role may
 * read, just to check the key; the role then stays unknown (null). Rejects with ApiError(401) for a bad key.
 */
export async function whoami() {
  if (await apiOffers("GET", "/keys/me")) return api("/keys/me");
  await api("/models");
  const id = (getKey() || "").split("_")[1] || null;  // ecgl_<key id>_<secret>: the id part is not secret
  return { id, name: id ? `key ${id}` : "signed in", role: null };
}

/** Render the sign-in form into `root`; on success call onSignedIn(who). */
export function render(root, { onSignedIn, reason } = {}) {
  root.innerHTML = `
    <section class="panel signin" aria-labelledby="signin-title">
      <h1 id="signin-title">Sign in to ECG Lens</h1>
      <p class="muted">Paste the API key your administrator gave you. It stays in this browser tab only and is
        forgotten when you sign out or close the tab.</p>
      ${reason ? `<p class="alert" role="alert">${esc(reason)}</p>` : ""}
      <form id="signin-form" novalidate>
        <div class="field">
          <label for="api-key">API key</label>
          <input id="api-key" name="api-key" type="password" autocomplete="off" spellcheck="false" required
                 aria-describedby="signin-error">
        </div>
        <p id="signin-error" class="error" role="alert"></p>
        <button class="btn" type="submit" id="signin-submit">Sign in</button>
      </form>
    </section>`;
  const form = root.querySelector("#signin-form");
  const input = root.querySelector("#api-key");
  const error = root.querySelector("#signin-error");
  const submit = root.querySelector("#signin-submit");
  input.focus();
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    if (!key) {
      error.textContent = "Enter your API key.";
      input.focus();
      return;
    }
    submit.disabled = true;
    error.textContent = "";
    setKey(key);
    try {
      const who = await whoami();
      setWho(who);
      onSignedIn?.(who);
    } catch (err) {
      signOut();
      error.textContent = err instanceof ApiError && err.status === 401
        ? "This API key was not accepted. Check it and try again."
        : err.message;
      input.select();
    } finally {
      submit.disabled = false;
    }
  });
}
