// Where the page connects and with which token.
//
// Served by the local stack: GET ./_tidings/config gives the URLs and ?user=NAME gets a token from
// GET ./_tidings/token. Against a deployed stack the URLs come from the deployed configuration
// (./tidings-config.json beside the page, written when the view is published) or from the
// settings form; ?ws=&api= only fill the form in, and the token pasted into the form is used
// only with the endpoints the user submitted with it. Settings live in sessionStorage (this tab
// only); the token is never left in the URL.

const STORAGE_KEY = "tidings.settings";

/** The JWT payload, decoded for display only: the server verifies the token, never the page. */
export function decodeTokenPayload(token) {
  const parts = typeof token === "string" ? token.split(".") : [];
  if (parts.length !== 3) throw new Error("The token is not a JWT (expected three dot-separated parts).");
  const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
  let payload;
  try {
    const binary = atob(padded);
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    payload = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new Error("The token's payload is not readable JSON.");
  }
  if (!payload || typeof payload.sub !== "string" || payload.sub.length === 0) {
    throw new Error("The token has no `sub` (user id) claim.");
  }
  return payload;
}

/** Seconds until the token expires (negative when expired), or null without an `exp` claim. */
export function secondsUntilExpiry(payload, nowMs = Date.now()) {
  return typeof payload.exp === "number" ? payload.exp - nowMs / 1000 : null;
}

export function loadStoredSettings() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "{}");
    return stored && typeof stored === "object" ? stored : {};
  } catch {
    return {};
  }
}

export function storeSettings(settings) {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(settings));
}

export function clearStoredSettings() {
  sessionStorage.removeItem(STORAGE_KEY);
}

function isWebSocketUrl(value) {
  try {
    const url = new URL(value);
    return url.protocol === "ws:" || url.protocol === "wss:";
  } catch {
    return false;
  }
}

function isHttpUrl(value) {
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}

/** Validate form or query input; returns an error message or "". */
export function validateSettings({ websocketUrl, apiUrl, token }) {
  if (!isWebSocketUrl(websocketUrl)) return "The WebSocket URL must start with ws:// or wss://.";
  if (apiUrl && !isHttpUrl(apiUrl)) return "The API URL must start with http:// or https://.";
  try {
    const payload = decodeTokenPayload(token);
    const left = secondsUntilExpiry(payload);
    if (left !== null && left <= 0) return "The token has expired; paste a fresh one.";
  } catch (error) {
    return error.message;
  }
  return "";
}

async function fetchJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  return response.json();
}

/** The local stack's config, or null when the page is not served by it. */
export async function fetchLocalConfig() {
  try {
    const config = await fetchJson(new URL("./_tidings/config", location.href));
    return config && isWebSocketUrl(config.websocketUrl) ? config : null;
  } catch {
    return null;
  }
}

/** The deployed stack's endpoints from ./tidings-config.json (same origin), or null. */
export async function fetchDeployedConfig() {
  try {
    const config = await fetchJson(new URL("./tidings-config.json", location.href));
    if (!config || !isWebSocketUrl(config.websocketUrl)) return null;
    return { websocketUrl: config.websocketUrl, apiUrl: isHttpUrl(config.apiUrl) ? config.apiUrl : "" };
  } catch {
    return null;
  }
}

/** A fresh token from the local stack for `user`. */
export async function fetchLocalToken(user) {
  const url = new URL("./_tidings/token", location.href);
  url.searchParams.set("user", user);
  const body = await fetchJson(url);
  if (!body || typeof body.token !== "string") throw new Error("The local stack returned no token.");
  return body.token;
}

/**
 * Read ?ws=, ?api=, ?token=, ?user= and ?heartbeat= from the address, then remove the
 * connection settings from it so a token never stays in the URL, history or a shared link.
 */
export function takeQuerySettings() {
  const url = new URL(location.href);
  const params = url.searchParams;
  const taken = {
    websocketUrl: params.get("ws") || "",
    apiUrl: params.get("api") || "",
    token: params.get("token") || "",
    user: params.get("user") || "",
    heartbeatSeconds: Number(params.get("heartbeat")) || 0,
  };
  if (params.has("token") || params.has("ws") || params.has("api")) {
    params.delete("token");
    params.delete("ws");
    params.delete("api");
    history.replaceState(null, "", url.pathname + (params.toString() ? `?${params}` : "") + url.hash);
  }
  return taken;
}
