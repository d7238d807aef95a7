// The console's only way to the server: the public REST API with a bearer token, exactly as
// the SDK uses it. Log-in is a dev token (embedded mode) or OIDC authorization code + PKCE.

const TOKEN_KEY = "gantry.console.token";
const REFRESH_KEY = "gantry.console.refresh";
const PKCE_KEY = "gantry.console.pkce";

/** An API error carrying the problem+json body. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(REFRESH_KEY);
}

/** `fetch` of an API path with the token; JSON in and out, problems thrown as ApiError. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401 && (await refresh())) {
    headers.Authorization = `Bearer ${token()}`;
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  }
  const text = await res.text();
  const data = text ? safeJson(text) : null;
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

function safeJson(text) {
  try { return JSON.parse(text); } catch { return { detail: text }; }
}

/**
 * Reads a Server-Sent Events endpoint with the token (EventSource cannot send headers) and calls
 * `onEvent(type, data)` per event. Returns a function that stops it; reconnects after errors.
 */
export function stream(path, onEvent, onError) {
  const controller = new AbortController();
  let stopped = false;
  (async function connect() {
    while (!stopped) {
      try {
        const res = await fetch(path, {
          headers: { Accept: "text/event-stream", Authorization: `Bearer ${token()}` },
          signal: controller.signal,
        });
        if (!res.ok) throw new ApiError(res.status, safeJson(await res.text()));
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const chunk = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let type = "message";
            const data = [];
            for (const line of chunk.split("\n")) {
              if (line.startsWith("event:")) type = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
            }
            if (data.length) onEvent(type, safeJson(data.join("\n")));
          }
        }
      } catch (err) {
        if (stopped) return;
        onError?.(err);
      }
      if (!stopped) await new Promise((r) => setTimeout(r, 2000));
    }
  })();
  return () => { stopped = true; controller.abort(); };
}

/** Embedded mode: a dev token for the local user (the server answers loopback clients only). */
export async function devLogin() {
  const res = await fetch("/v1/console/dev-token", { method: "POST" });
  const data = safeJson(await res.text());
  if (!res.ok) throw new ApiError(res.status, data);
  sessionStorage.setItem(TOKEN_KEY, data.access_token);
}

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function redirectUri() {
  return `${location.origin}/console/`;
}

async function discovery(issuer) {
  const res = await fetch(`${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
  if (!res.ok) throw new Error(`OIDC discovery failed: HTTP ${res.status}`);
  return res.json();
}

/** Keycloak: starts the authorization-code flow with PKCE (S256); the browser leaves. */
export async function oidcLogin(config) {
  const meta = await discovery(config.issuer);
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = base64url(crypto.getRandomValues(new Uint8Array(16)));
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state, hash: location.hash }));
  const url = new URL(meta.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: config.client_id,
    redirect_uri: redirectUri(),
    scope: "openid",
    state,
    code_challenge: challenge,
    code_challenge_method: "S256",
  }).toString();
  location.assign(url.toString());
}

/** Keycloak: on return from the realm, exchanges `?code=` for tokens. True when it did. */
export async function oidcCallback(config) {
  const params = new URLSearchParams(location.search);
  const code = params.get("code");
  if (!code) return false;
  const saved = JSON.parse(sessionStorage.getItem(PKCE_KEY) || "null");
  sessionStorage.removeItem(PKCE_KEY);
  history.replaceState(null, "", `/console/${saved?.hash || ""}`);
  if (!saved || saved.state !== params.get("state")) throw new Error("log-in state mismatch; try again");
  const meta = await discovery(config.issuer);
  const res = await fetch(meta.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: redirectUri(),
      client_id: config.client_id,
      code_verifier: saved.verifier,
    }),
  });
  const data = await res.json();
  if (!res.ok) throw new Error(data.error_description || data.error || "token exchange failed");
  sessionStorage.setItem(TOKEN_KEY, data.access_token);
  if (data.refresh_token) sessionStorage.setItem(REFRESH_KEY, data.refresh_token);
  return true;
}

let consoleConfig = null;

export function setConfig(config) {
  consoleConfig = config;
}

/** Renews an expired token: a refresh grant with Keycloak, a new dev token in embedded mode. */
async function refresh() {
  if (!consoleConfig) return false;
  try {
    if (consoleConfig.auth === "embedded" && consoleConfig.dev_login) {
      await devLogin();
      return true;
    }
    const refreshToken = sessionStorage.getItem(REFRESH_KEY);
    if (consoleConfig.auth !== "keycloak" || !refreshToken) return false;
    const meta = await discovery(consoleConfig.issuer);
    const res = await fetch(meta.token_endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: refreshToken, client_id: consoleConfig.client_id }),
    });
    if (!res.ok) return false;
    const data = await res.json();
    sessionStorage.setItem(TOKEN_KEY, data.access_token);
    if (data.refresh_token) sessionStorage.setItem(REFRESH_KEY, data.refresh_token);
    return true;
  } catch {
    return false;
  }
}
