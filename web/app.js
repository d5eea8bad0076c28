// The progress view: wires settings, the connection, the job store, uploads and the view.

import {
  clearStoredSettings,
  decodeTokenPayload,
  fetchDeployedConfig,
  fetchLocalConfig,
  fetchLocalToken,
  loadStoredSettings,
  secondsUntilExpiry,
  storeSettings,
  takeQuerySettings,
  validateSettings,
} from "./js/config.js";
import { TidingsConnection } from "./js/connection.js";
import { JobStore } from "./js/jobs.js";
import { createJob, fetchJob, putFile } from "./js/upload.js";
import { JobListView, showConnectionState } from "./js/view.js";

const DEFAULT_HEARTBEAT_MS = 5 * 60 * 1000; // well inside API Gateway's 10-minute idle limit
const USER_ID = /^[A-Za-z0-9_.:@-]{1,128}$/;

const $ = (id) => document.getElementById(id);

const store = new JobStore();
const view = new JobListView($("jobs"), $("no-jobs"));
const indicator = $("connection");

/** What the page needs once settings are known. */
const session = {
  websocketUrl: "",
  apiUrl: "",
  token: "",
  userId: "",
  connection: null,
  linkRequests: new Set(),
};

function render() {
  view.render(store.list());
}

function setUploadStatus(text) {
  $("upload-status").textContent = text;
}

function showServerError(message) {
  const box = $("server-error");
  const code = typeof message.code === "string" ? message.code : "error";
  const text = typeof message.message === "string" ? message.message : "";
  box.textContent = `Server error (${code}): ${text}`;
  box.hidden = false;
}

/** Completed jobs: ask the API for presigned output/poster URLs when the message has none. */
async function ensureOutputLinks(job) {
  const message = job.message;
  if (!message || message.stage !== "completed") return;
  if (message.output && message.output.url) return;
  if (!session.apiUrl || session.linkRequests.has(job.jobId)) return;
  session.linkRequests.add(job.jobId);
  try {
    const body = await fetchJob(session.apiUrl, session.token, job.jobId);
    const output = (body && body.output) || {};
    job.links = { url: output.url, posterUrl: output.posterUrl };
    render();
  } catch (error) {
    // Leave the card without a preview; a later snapshot (reload) asks again.
    session.linkRequests.delete(job.jobId);
    console.warn(error.message);
  }
}

function onServerMessage(message) {
  switch (message.type) {
    case "subscribed":
      $("server-error").hidden = true;
      break;
    case "snapshot":
      store.applySnapshot(message.jobs);
      render();
      for (const job of store.list()) ensureOutputLinks(job);
      break;
    case "progress":
    case "completed":
    case "failed":
      if (store.apply(message)) {
        render();
        ensureOutputLinks(store.jobs.get(message.jobId));
      }
      break;
    case "error":
      showServerError(message);
      break;
    default:
      break; // pong, unsubscribed and types a newer server adds
  }
}

async function uploadFile(file) {
  if (!session.apiUrl) {
    setUploadStatus("No API URL is configured, so this page cannot start jobs.");
    return;
  }
  setUploadStatus(`Creating a job for ${file.name}…`);
  let created;
  try {
    created = await createJob(session.apiUrl, session.token, file);
  } catch (error) {
    setUploadStatus(error.message);
    return;
  }
  const { jobId, upload } = created;
  setUploadStatus(`Uploading ${file.name}…`);
  store.setUpload(jobId, { filename: file.name, state: "uploading", loaded: 0, total: file.size });
  render();
  let pending = false;
  try {
    await putFile(upload, file, (loaded, total) => {
      store.setUpload(jobId, { loaded, total });
      // Progress events can come faster than frames; render once per frame.
      if (!pending) {
        pending = true;
        requestAnimationFrame(() => {
          pending = false;
          render();
        });
      }
    });
    store.setUpload(jobId, { state: "done", loaded: file.size, total: file.size });
    setUploadStatus(`Uploaded ${file.name}.`);
  } catch (error) {
    store.setUpload(jobId, { state: "failed", error: error.message });
    setUploadStatus(error.message);
  }
  render();
}

function wireUploads() {
  const input = $("file-input");
  const zone = $("dropzone");
  input.addEventListener("change", () => {
    for (const file of input.files) uploadFile(file);
    input.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    for (const file of event.dataTransfer.files) uploadFile(file);
  });
  // A file dropped beside the zone would otherwise replace the page with the file.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
}

function startWatching(getToken, heartbeatMs) {
  $("settings").hidden = true;
  $("submit").hidden = false;
  $("jobs-section").hidden = false;
  $("change-settings").hidden = false;
  $("user-name").textContent = `Signed in as ${session.userId}`;
  session.connection = new TidingsConnection({
    url: session.websocketUrl,
    getToken,
    topics: [`user:${session.userId}`],
    onMessage: onServerMessage,
    onState: (state, detail) => showConnectionState(indicator, state, detail),
    heartbeatMs,
  });
  session.connection.start();
}

function showSettings(mode, error = "") {
  if (session.connection) session.connection.stop();
  session.connection = null;
  $("settings").hidden = false;
  $("local-form").hidden = mode !== "local";
  $("remote-form").hidden = mode !== "remote";
  $("settings-error").textContent = error;
  showConnectionState(indicator, "offline", "Not connected.");
}

async function startLocal(config, user, heartbeatMs) {
  session.websocketUrl = config.websocketUrl;
  session.apiUrl = config.apiUrl || "";
  session.userId = user;
  storeSettings({ user });
  // A fresh token for every attempt: a reconnect after the token's expiry still succeeds.
  const getToken = async () => {
    session.token = await fetchLocalToken(user);
    session.userId = decodeTokenPayload(session.token).sub;
    return session.token;
  };
  startWatching(getToken, heartbeatMs);
}

function startRemote(settings, heartbeatMs) {
  session.websocketUrl = settings.websocketUrl;
  session.apiUrl = settings.apiUrl || "";
  session.token = settings.token;
  session.userId = decodeTokenPayload(settings.token).sub;
  storeSettings({ websocketUrl: settings.websocketUrl, apiUrl: settings.apiUrl, token: settings.token });
  const getToken = async () => {
    const left = secondsUntilExpiry(decodeTokenPayload(session.token));
    if (left !== null && left <= 0) {
      showSettings("remote", "The token has expired; paste a fresh one.");
      throw Object.assign(new Error("The token has expired"), { permanent: true });
    }
    return session.token;
  };
  startWatching(getToken, heartbeatMs);
}

/** True when both describe the same endpoints (a link that only repeats the confirmed ones). */
function sameEndpoints(a, b) {
  return (a.websocketUrl || "") === (b.websocketUrl || "") && (a.apiUrl || "") === (b.apiUrl || "");
}

async function main() {
  wireUploads();
  const query = takeQuerySettings();
  const heartbeatMs = query.heartbeatSeconds > 0 ? query.heartbeatSeconds * 1000 : DEFAULT_HEARTBEAT_MS;
  let stored = loadStoredSettings();
  // ?ws= and ?api= come from a link anyone can craft: they only fill in the form, and a token
  // is never sent to them until the user confirms them (issue 14, item 12).
  const proposal = query.websocketUrl || query.apiUrl ? { websocketUrl: query.websocketUrl, apiUrl: query.apiUrl } : null;
  const newProposal = proposal && !sameEndpoints(proposal, stored);
  if (newProposal && stored.token) {
    clearStoredSettings(); // the stored token belongs to the endpoints the user confirmed, not these
    stored = {};
  }
  // A deployed stack confirmed in this tab (the form) wins over the local stack's config.
  const remoteChosen = Boolean(newProposal || stored.websocketUrl);
  const local = remoteChosen ? null : await fetchLocalConfig();

  if (local) {
    $("change-settings").addEventListener("click", () => {
      clearStoredSettings();
      location.search = "";
    });
    $("local-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const url = new URL(location.href);
      url.searchParams.set("user", $("local-user").value.trim());
      location.assign(url.href);
    });
    const user = query.user || stored.user || "";
    if (USER_ID.test(user)) await startLocal(local, user, heartbeatMs);
    else showSettings("local", user ? "A user name is 1-128 of A-Z a-z 0-9 _ . : @ -" : "");
    return;
  }

  $("change-settings").addEventListener("click", () => {
    clearStoredSettings();
    showSettings("remote");
  });
  $("remote-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const settings = {
      websocketUrl: $("remote-ws").value.trim(),
      apiUrl: $("remote-api").value.trim(),
      token: $("remote-token").value.trim(),
    };
    const error = validateSettings(settings);
    if (error) {
      $("settings-error").textContent = error;
      return;
    }
    $("remote-token").value = "";
    startRemote(settings, heartbeatMs); // the user's submit is the confirmation
  });
  const deployed = newProposal ? null : await fetchDeployedConfig();
  const endpoints = newProposal ? proposal : stored.websocketUrl ? stored : deployed || {};
  const settings = {
    websocketUrl: endpoints.websocketUrl || "",
    apiUrl: endpoints.apiUrl || "",
    token: newProposal ? "" : stored.token || "",
  };
  $("remote-ws").value = settings.websocketUrl;
  $("remote-api").value = settings.apiUrl;
  if (newProposal) {
    showSettings("remote", "");
    $("settings-error").textContent =
      "The link names these endpoints: paste a token only if you trust them.";
    return;
  }
  const error = validateSettings(settings);
  if (error) showSettings("remote", settings.token ? error : "");
  else startRemote(settings, heartbeatMs);
}

main();
