// The local console: invocations live, connections, and a job's path. Every value from the stack
// goes into the page through textContent (never innerHTML): events and logs are untrusted input.

const API = "/_tidings/console/api";
const MAX_ROWS = 500;

const $ = (id) => document.getElementById(id);
const state = {
  lastSeq: 0,
  expanded: new Set(),
  following: "",
  followRequest: 0,
  listedQuery: null, // the filters of the list on screen (or being fetched)
  loading: false,
  reloadAgain: false,
  generation: 0,
  labels: [], // the app's labels (filter boxes), e.g. "job"
  panels: [], // the app's panels and columns, e.g. "jobs", "topics"
};

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clockTime(epochSeconds) {
  if (typeof epochSeconds !== "number") return "";
  const date = new Date(epochSeconds * 1000);
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

function isoTime(iso) {
  const parsed = Date.parse(iso);
  return Number.isNaN(parsed) ? String(iso ?? "") : clockTime(parsed / 1000);
}

function ms(value) {
  return typeof value === "number" ? `${value.toFixed(1)} ms` : "–";
}

function pretty(value) {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

async function api(path, options = {}) {
  const response = await fetch(API + path, { cache: "no-store", ...options });
  if (response.status === 204) return null;
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = body?.error?.message ?? `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}

// ------------------------------------------------------------------------------ invocations

function filterQuery(extra = {}) {
  const params = new URLSearchParams();
  for (const name of ["function", ...state.labels, "connection", "user", "outcome"]) {
    const value = $(`filter-${name}`).value.trim();
    if (value) params.set(name, value);
  }
  for (const [key, value] of Object.entries(extra)) params.set(key, String(value));
  return params.toString();
}

function invocationRow(summary, fresh) {
  let outcome = summary.ok ? "ok" : `${summary.errorType ?? "error"}: ${summary.errorMessage ?? ""}`;
  if (summary.denied && summary.denied.length) outcome += ` · ${summary.denied.length} denied by IAM`;
  const row = el(
    "tr",
    {
      class: fresh ? "invocation fresh" : "invocation",
      "data-seq": summary.seq,
      "data-function": summary.function,
      "data-trigger": summary.trigger,
      "aria-expanded": "false",
      tabindex: "0",
    },
    el("td", { class: "num", text: summary.seq }),
    el("td", { text: clockTime(summary.startedAt) }),
    el("td", { text: summary.function }),
    el("td", { class: "id", text: summary.trigger || "–" }),
    el("td", { class: "num", text: ms(summary.durationMs) }),
    el("td", { class: summary.cold ? "cold" : "", text: summary.cold ? "cold" : "warm" }),
    el("td", { class: summary.ok ? "outcome-ok" : "outcome-error", text: outcome }),
  );
  const toggle = () => toggleDetail(row, Number(summary.seq));
  row.addEventListener("click", toggle);
  row.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      toggle();
    }
  });
  return row;
}

function showInvocations(summaries, { prepend, fresh }) {
  const body = $("invocation-rows");
  if (!prepend) body.replaceChildren();
  const rows = summaries.map((summary) => invocationRow(summary, fresh));
  if (prepend) body.prepend(...rows);
  else body.append(...rows);
  // A reload (new filter) keeps open the details that are still listed
  if (!prepend) {
    for (const row of rows) {
      if (state.expanded.has(Number(row.dataset.seq))) toggleDetail(row, Number(row.dataset.seq));
    }
  }
  for (const summary of summaries) state.lastSeq = Math.max(state.lastSeq, summary.seq);
  const invocationRows = body.querySelectorAll("tr.invocation");
  for (let i = MAX_ROWS; i < invocationRows.length; i += 1) {
    const extra = invocationRows[i];
    if (extra.nextElementSibling?.classList.contains("detail")) extra.nextElementSibling.remove();
    extra.remove();
  }
  const count = body.querySelectorAll("tr.invocation").length;
  $("invocation-count").textContent = count ? `(${count})` : "";
  $("invocations-empty").hidden = count > 0;
}

function showFunctions(functions) {
  const select = $("filter-function");
  const chosen = select.value;
  const known = new Set([...select.options].map((option) => option.value));
  for (const name of functions) {
    if (!known.has(name)) select.append(el("option", { value: name, text: name }));
  }
  select.value = chosen;
}

async function reloadInvocations() {
  const query = filterQuery();
  // Typing fires `input`, and leaving the field `change` with the same filters: re-rendering then
  // would replace the rows under a click that has started (mousedown) and lose it.
  if (query === state.listedQuery) return;
  state.listedQuery = query;
  state.generation += 1;
  const generation = state.generation;
  let data;
  try {
    data = await api(`/invocations?${query}`);
  } catch (error) {
    if (generation === state.generation) state.listedQuery = null; // let the next event retry
    throw error;
  }
  if (generation !== state.generation) return; // a newer filter has been asked for
  state.lastSeq = 0;
  showInvocations(data.invocations, { prepend: false, fresh: false });
  showFunctions(data.functions);
}

// New records since the newest shown, with the current filters; one request at a time
async function loadNewInvocations() {
  if (state.loading) {
    state.reloadAgain = true;
    return;
  }
  state.loading = true;
  try {
    do {
      state.reloadAgain = false;
      if (state.listedQuery !== filterQuery()) {
        await reloadInvocations(); // the last reload failed: the rows are not for these filters
        continue;
      }
      const generation = state.generation;
      const data = await api(`/invocations?${filterQuery({ after: state.lastSeq })}`);
      if (generation !== state.generation) continue; // the list was reloaded meanwhile
      // A reload that was in flight when this request left may have drawn some of these already
      const unseen = data.invocations.filter((summary) => summary.seq > state.lastSeq);
      if (unseen.length) showInvocations(unseen, { prepend: true, fresh: true });
      showFunctions(data.functions);
    } while (state.reloadAgain);
  } finally {
    state.loading = false;
  }
}

async function toggleDetail(row, seq) {
  const open = row.nextElementSibling?.classList.contains("detail") ? row.nextElementSibling : null;
  if (open) {
    open.remove();
    row.setAttribute("aria-expanded", "false");
    state.expanded.delete(seq);
    return;
  }
  row.setAttribute("aria-expanded", "true");
  state.expanded.add(seq);
  const cell = el("td", { colspan: 7 }, el("p", { class: "muted", text: "Loading…" }));
  const detailRow = el("tr", { class: "detail", "data-seq": seq }, cell);
  row.after(detailRow);
  try {
    const detail = await api(`/invocations/${encodeURIComponent(seq)}`);
    cell.replaceChildren(...renderDetail(detail));
  } catch (error) {
    cell.replaceChildren(el("p", { class: "message bad", text: `Could not load: ${error.message}` }));
  }
}

function renderDetail(detail) {
  const parts = [
    el(
      "p",
      { class: "muted" },
      `request ${detail.requestId}`,
      detail.connectionId ? ` · connection ${detail.connectionId}` : "",
      detail.users.length ? ` · user ${detail.users.join(", ")}` : "",
      detail.jobs?.length ? ` · job ${detail.jobs.join(", ")}` : "",
      detail.replayOf ? ` · replay of #${detail.replayOf}` : "",
    ),
    el("h3", { text: "Event" }),
    el("pre", { class: "event", text: pretty(detail.event) }),
    el("h3", { text: "Response" }),
    el("pre", { class: "result", text: detail.ok ? pretty(detail.result) : `${detail.errorType}: ${detail.errorMessage}` }),
  ];
  if (detail.denied && detail.denied.length) {
    // calls IAM refused during this invocation, each with what would allow it
    parts.push(
      el("h3", { text: `Denied by IAM (${detail.denied.length})` }),
      el("ul", { class: "denied" }, ...detail.denied.map((line) => el("li", { text: line }))),
    );
  }
  if (detail.traceback) {
    parts.push(el("h3", { text: "Traceback" }), el("pre", { class: "traceback", text: detail.traceback }));
  }
  parts.push(el("h3", { text: `Logs (${detail.logs.length})` }), renderLogs(detail.logs));
  parts.push(...renderReplay(detail));
  return parts;
}

function renderLogs(lines) {
  if (!lines.length) return el("p", { class: "muted", text: "Nothing was printed." });
  const table = el("table", { class: "logs" });
  for (const line of lines) {
    const fields = Object.entries(line.fields)
      .filter(([key]) => !["xray_trace_id", "function_arn", "function_memory_size", "sampling_rate"].includes(key))
      .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
      .join("  ");
    const level = line.level ?? (line.kind === "text" ? "print" : "");
    table.append(
      el(
        "tr",
        { class: `log-line log-${line.kind}` },
        el("td", { text: line.timestamp ? isoTime(line.timestamp) : "" }),
        el("td", { class: `level level-${level}`, text: level }),
        el("td", { class: "log-message", text: line.message }),
        el("td", { class: "fields", text: fields }),
      ),
    );
  }
  return table;
}

function renderReplay(detail) {
  const editor = el("textarea", { class: "replay-event", spellcheck: "false", "aria-label": "Event to replay" });
  editor.value = pretty(detail.event);
  const message = el("span", { class: "message", role: "status" });
  const send = async (edited) => {
    let body = {};
    if (edited) {
      try {
        body = { event: JSON.parse(editor.value) };
      } catch (error) {
        message.className = "message bad";
        message.textContent = `Not JSON: ${error.message}`;
        return;
      }
    }
    message.className = "message";
    message.textContent = "Invoking…";
    try {
      const replayed = await api(`/invocations/${encodeURIComponent(detail.seq)}/replay`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      message.textContent = `Replayed as #${replayed.seq} (${replayed.ok ? "ok" : "error"}).`;
      await loadNewInvocations();
    } catch (error) {
      message.className = "message bad";
      message.textContent = `Replay failed: ${error.message}`;
    }
  };
  return [
    el("h3", { text: "Replay" }),
    editor,
    el(
      "div",
      { class: "actions" },
      el("button", { type: "button", class: "replay-same", onclick: () => send(false), text: "Replay same event" }),
      el("button", { type: "button", class: "replay-edited", onclick: () => send(true), text: "Replay edited event" }),
      message,
    ),
  ];
}

// ------------------------------------------------------------------------------ connections

let connectionsPending = null;

function refreshConnections() {
  if (connectionsPending) return connectionsPending;
  connectionsPending = api("/connections")
    .then((data) => showConnections(data.connections))
    .catch((error) => {
      $("connections-message").textContent = `Could not list connections: ${error.message}`;
    })
    .finally(() => {
      connectionsPending = null;
    });
  return connectionsPending;
}

function showConnections(connections) {
  const body = $("connection-rows");
  body.replaceChildren(
    ...connections.map((connection) =>
      el(
        "tr",
        { class: "connection", "data-connection-id": connection.connectionId },
        el("td", { class: "id", text: connection.connectionId }),
        el("td", { text: connection.user ?? "–" }),
        state.panels.includes("topics")
          ? el("td", { class: "topics", text: (connection.topics ?? []).join(", ") || "–" })
          : null,
        el("td", { text: isoTime(connection.connectedAt) }),
        el("td", { text: isoTime(connection.lastActiveAt) }),
        el(
          "td",
          {},
          el("button", {
            type: "button",
            class: "danger disconnect",
            text: "Disconnect",
            title: "DELETE @connections/{id}: the client is closed; later posts get 410 Gone",
            onclick: () => disconnect(connection.connectionId),
          }),
        ),
      ),
    ),
  );
  $("connection-count").textContent = connections.length ? `(${connections.length})` : "";
  $("connections-empty").hidden = connections.length > 0;
}

async function disconnect(connectionId) {
  const message = $("connections-message");
  try {
    await api(`/connections/${encodeURIComponent(connectionId)}`, { method: "DELETE" });
    message.className = "message";
    message.textContent = `Disconnected ${connectionId}.`;
  } catch (error) {
    message.className = "message bad";
    message.textContent = `Disconnect ${connectionId}: ${error.message}`;
  }
  await refreshConnections();
}

// ------------------------------------------------------------------------------ follow a job

async function follow(jobId) {
  state.following = jobId;
  // Every invocation re-reads the followed job; a slow, older answer must not replace a newer one
  const request = ++state.followRequest;
  const current = () => request === state.followRequest;
  const target = $("follow-result");
  try {
    const chain = await api(`/jobs/${encodeURIComponent(jobId)}`);
    if (current()) target.replaceChildren(...renderChain(chain));
  } catch (error) {
    if (current()) {
      target.replaceChildren(el("p", { class: "message bad", text: `Could not follow ${jobId}: ${error.message}` }));
    }
  }
}

function renderChain(chain) {
  const parts = [
    el(
      "p",
      { class: "muted" },
      `${chain.events.length} event(s) through notify; ${chain.publishers.length} other invocation(s) mention ${chain.jobId}.`,
    ),
  ];
  const list = el("ul", { class: "hops" });
  for (const hop of [...chain.events].reverse()) {
    const steps = el("ol");
    steps.append(
      el(
        "li",
        { class: "hop-publish" },
        hop.publisher
          ? `published by ${hop.publisher.function} #${hop.publisher.seq} at ${clockTime(hop.emittedAt / 1000)}`
          : `emitted at ${hop.emittedAt ? clockTime(hop.emittedAt / 1000) : "?"} (publisher outside the local stack)`,
      ),
      el("li", { class: "hop-bus" }, `bus: ${hop.bus.source} / ${hop.bus.detailType}, event ${hop.bus.eventId} via ${hop.bus.rule}`),
      el(
        "li",
        { class: "hop-notify" },
        `notify #${hop.notify.seq} started ${clockTime(hop.notify.startedAt)} (`,
        el("span", { class: "latency", text: `+${ms(hop.publishToNotifyMs)}` }),
        ` after publish), ran ${ms(hop.notifyMs)}: ${hop.outcome ?? "?"}, delivered ${hop.delivered ?? "?"}, gone ${hop.gone ?? "?"}`,
      ),
    );
    for (const post of hop.posts) {
      steps.append(
        el(
          "li",
          { class: "hop-post" },
          `post to ${post.connectionId} at ${clockTime(post.at)} (+${ms(post.afterNotifyStartMs)} in notify) · publish→receive `,
          el("span", { class: "latency", text: ms(post.publishToReceiveMs) }),
        ),
      );
    }
    list.append(
      el(
        "li",
        { class: "hop-event", "data-seq": hop.seq ?? "" },
        el("strong", { text: `seq ${hop.seq ?? "?"} · ${hop.stage ?? "?"} · ${hop.percent ?? "?"}%` }),
        steps,
      ),
    );
  }
  parts.push(list);
  return parts;
}

// ------------------------------------------------------------------------------ live stream

function connectStream() {
  const indicator = $("stream-state");
  const label = indicator.querySelector(".indicator-label");
  const source = new EventSource(`${API}/stream`);
  source.addEventListener("open", () => {
    indicator.dataset.state = "live";
    label.textContent = "Live";
    // Anything recorded while the stream was down is fetched now
    loadNewInvocations().catch(() => {});
    refreshConnections();
  });
  source.addEventListener("error", () => {
    indicator.dataset.state = "down";
    label.textContent = "Reconnecting…";
  });
  source.addEventListener("invocation", () => {
    loadNewInvocations().catch(() => {});
    if (state.following) follow(state.following);
  });
  source.addEventListener("gateway", () => {
    refreshConnections();
  });
}

// The app's own parts of the page (labels, panels) are shown only when the stack has them
async function applyFeatures() {
  try {
    const features = await api("/features");
    state.labels = features.labels;
    state.panels = features.panels;
  } catch {
    return;
  }
  for (const node of document.querySelectorAll("[data-label]")) {
    node.hidden = !state.labels.includes(node.dataset.label);
  }
  for (const node of document.querySelectorAll("[data-panel]")) {
    node.hidden = !state.panels.includes(node.dataset.panel);
  }
}

async function start() {
  await applyFeatures();
  const reload = () => reloadInvocations().catch(() => {});
  $("filters").addEventListener("input", reload);
  $("filters").addEventListener("change", reload);
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  $("filters").addEventListener("reset", () => setTimeout(reload, 0));
  $("follow-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const jobId = $("follow-job").value.trim();
    if (jobId) follow(jobId);
  });
  // Posts and last-activity times are not streamed one by one
  setInterval(refreshConnections, 5000);
  reloadInvocations()
    .catch(() => {})
    .finally(connectStream);
  refreshConnections();
}

start();
