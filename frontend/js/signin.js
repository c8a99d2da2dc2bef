// Sign-in view: paste an API key; it is checked against the service, then kept in sessionStorage.
import { api, ApiError, esc, setKey, setWho, signOut } from "./api.js";

/** Who this key belongs to: {id, name, role} from GET /keys/me. Rejects with ApiError(401) for a bad key. */
export async function whoami() {
  return api("/keys/me");
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
