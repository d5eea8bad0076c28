// DOM for the job cards and the connection indicator. Every value from a message goes through
// textContent or a checked attribute, never innerHTML: message text is untrusted.

const STAGE_LABELS = {
  uploading: "Uploading",
  uploaded: "Waiting for the transcoder",
  queued: "Queued",
  probing: "Probing",
  transcoding: "Transcoding",
  merging: "Merging",
  completed: "Completed",
  failed: "Failed",
};

const SEGMENT_STATES = new Set(["pending", "running", "done", "failed"]);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function clampPercent(value) {
  const number = Number(value);
  if (!Number.isFinite(number)) return 0;
  return Math.min(100, Math.max(0, number));
}

function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

export function formatDuration(seconds) {
  if (!isNumber(seconds) || seconds < 0) return "";
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole} s`;
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) return `${minutes} min ${whole % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function formatBytes(bytes) {
  if (!isNumber(bytes) || bytes < 0) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 || value >= 100 ? 0 : 1)} ${units[unit]}`;
}

/** An http(s) or blob URL safe to put in href/src, or "" (no javascript:, data: etc.). */
export function safeUrl(value) {
  if (typeof value !== "string" || value === "") return "";
  try {
    const url = new URL(value, location.href);
    return ["http:", "https:", "blob:"].includes(url.protocol) ? url.href : "";
  } catch {
    return "";
  }
}

function basename(key) {
  return typeof key === "string" ? key.split("/").filter(Boolean).pop() || "" : "";
}

/** The name a person recognises: the uploaded file's name, else the input key, else the id. */
export function jobName(job) {
  const message = job.message || {};
  return (
    (job.upload && job.upload.filename) || basename(message.input && message.input.key) || job.jobId
  );
}

function setBar(bar, percent, label, valueText) {
  const rounded = Math.round(clampPercent(percent));
  bar.setAttribute("aria-valuenow", String(rounded));
  bar.setAttribute("aria-label", label);
  bar.setAttribute("aria-valuetext", valueText);
  bar.firstElementChild.style.width = `${clampPercent(percent)}%`;
}

function makeBar(className) {
  const bar = el("div", `bar ${className}`);
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "100");
  bar.setAttribute("aria-valuenow", "0");
  bar.append(el("span", "fill"));
  return bar;
}

function buildCard(jobId) {
  const card = el("li", "job");
  card.dataset.jobId = jobId;
  const header = el("header", "job-header");
  const title = el("h3", "job-name");
  const stage = el("span", "stage");
  header.append(title, stage);

  const upload = el("div", "upload");
  upload.hidden = true;
  const uploadBar = makeBar("upload-bar");
  const uploadText = el("p", "upload-text");
  upload.append(uploadBar, uploadText);

  const progress = el("div", "progress");
  const overall = makeBar("overall");
  const percent = el("span", "percent");
  progress.append(overall, percent);

  const stats = el("dl", "stats");
  const segments = el("ol", "segments");
  segments.setAttribute("aria-label", "Segments");
  const error = el("div", "error");
  error.setAttribute("role", "alert");
  error.hidden = true;
  const warnings = el("ul", "warnings");
  warnings.hidden = true;
  const output = el("div", "output");
  output.hidden = true;
  const meta = el("p", "meta");

  card.append(header, upload, progress, stats, segments, error, warnings, output, meta);
  return card;
}

function renderStats(stats, message) {
  const rows = [];
  if (isNumber(message.etaSeconds) && !["completed", "failed"].includes(message.stage)) {
    rows.push(["ETA", formatDuration(message.etaSeconds)]);
  }
  if (isNumber(message.speed)) rows.push(["Speed", `${message.speed.toFixed(1)}×`]);
  if (isNumber(message.fps)) rows.push(["FPS", message.fps.toFixed(0)]);
  if (isNumber(message.frames)) {
    const total = isNumber(message.totalFrames) ? ` / ${message.totalFrames.toLocaleString("en")}` : "";
    rows.push(["Frames", `${message.frames.toLocaleString("en")}${total}`]);
  }
  const output = message.output || {};
  if (isNumber(output.durationSeconds)) rows.push(["Duration", formatDuration(output.durationSeconds)]);
  if (isNumber(output.sizeBytes)) rows.push(["Size", formatBytes(output.sizeBytes)]);
  if (isNumber(output.elapsedSeconds)) rows.push(["Took", formatDuration(output.elapsedSeconds)]);
  const nodes = [];
  for (const [name, value] of rows) {
    const row = el("div", "stat");
    row.dataset.stat = name.toLowerCase();
    row.append(el("dt", "", name), el("dd", "", value));
    nodes.push(row);
  }
  stats.replaceChildren(...nodes);
}

function renderSegments(list, segments) {
  const items = [];
  for (const segment of Array.isArray(segments) ? segments : []) {
    if (!segment || !Number.isInteger(segment.index)) continue;
    const state = SEGMENT_STATES.has(segment.state) ? segment.state : "pending";
    const percent = clampPercent(segment.percent);
    const item = el("li", `segment segment-${state}`);
    const text = `Segment ${segment.index + 1}: ${Math.round(percent)}%, ${state}`;
    item.title = text;
    const fill = el("span", "fill");
    fill.style.width = `${percent}%`;
    item.append(fill, el("span", "visually-hidden", text));
    items.push(item);
  }
  list.replaceChildren(...items);
  list.hidden = items.length === 0;
}

function renderError(box, message) {
  const error = message.error;
  if (message.stage !== "failed") {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  const code = error && typeof error.code === "string" ? error.code : "failed";
  const text = error && typeof error.message === "string" ? error.message : "The job failed.";
  const hint =
    error && error.retryable
      ? "This looks temporary: upload the file again to retry."
      : "Retrying the same file will fail the same way; check the input.";
  const heading = el("p", "error-message");
  heading.append(el("strong", "", "Failed: "), document.createTextNode(text));
  box.replaceChildren(heading, el("p", "error-code", `Code: ${code}`), el("p", "error-hint", hint));
  box.hidden = false;
}

function renderWarnings(list, warnings) {
  const items = (Array.isArray(warnings) ? warnings : [])
    .filter((w) => typeof w === "string")
    .map((w) => el("li", "", w));
  list.replaceChildren(...items);
  list.hidden = items.length === 0;
}

function renderOutput(box, job, name) {
  const message = job.message || {};
  if (message.stage !== "completed") {
    box.hidden = true;
    return;
  }
  const output = { ...(message.output || {}), ...(job.links || {}) };
  const videoUrl = safeUrl(output.url);
  const posterUrl = safeUrl(output.posterUrl);
  // Rebuild only when the links change, so a playing preview is not reset by a re-render.
  const signature = `${videoUrl}|${posterUrl}|${output.key || ""}`;
  box.hidden = false;
  if (box.dataset.signature === signature) return;
  box.dataset.signature = signature;
  const nodes = [];
  if (videoUrl) {
    const video = el("video", "preview");
    video.controls = true;
    video.preload = "metadata";
    video.playsInline = true;
    video.src = videoUrl;
    if (posterUrl) video.poster = posterUrl;
    video.setAttribute("aria-label", `Preview of ${name}`);
    const link = el("a", "output-link", "Open the transcoded video");
    link.href = videoUrl;
    link.target = "_blank";
    link.rel = "noopener";
    nodes.push(video, link);
  } else if (posterUrl) {
    const poster = el("img", "poster");
    poster.src = posterUrl;
    poster.alt = `Poster frame of ${name}`;
    nodes.push(poster);
  }
  if (!videoUrl && typeof output.key === "string") {
    const where = typeof output.bucket === "string" ? `s3://${output.bucket}/${output.key}` : output.key;
    nodes.push(el("p", "output-key", `Output: ${where}`));
  }
  box.replaceChildren(...nodes);
}

function renderUpload(box, upload, name) {
  if (!upload || upload.state === "done") {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const percent = upload.total > 0 ? (100 * upload.loaded) / upload.total : 0;
  const bar = box.querySelector(".upload-bar");
  const text = box.querySelector(".upload-text");
  if (upload.state === "failed") {
    setBar(bar, percent, `Upload of ${name}`, `upload failed at ${Math.round(percent)}%`);
    text.textContent = upload.error || "The upload failed.";
    box.classList.add("upload-failed");
    return;
  }
  setBar(bar, percent, `Upload of ${name}`, `${Math.round(percent)}% uploaded`);
  text.textContent = `Uploading: ${formatBytes(upload.loaded)} of ${formatBytes(upload.total)} (${Math.round(percent)}%)`;
}

/** The stage the card shows: the job's, or the upload's while no job message has arrived. */
function displayStage(job) {
  if (job.message) return job.message.stage;
  if (job.upload && job.upload.state === "uploading") return "uploading";
  if (job.upload && job.upload.state === "failed") return "failed";
  return "uploaded";
}

export class JobListView {
  constructor(list, emptyNote) {
    this.list = list;
    this.emptyNote = emptyNote;
    /** @type {Map<string, HTMLElement>} */
    this.cards = new Map();
  }

  /** Bring the cards in line with `jobs` (newest first); existing cards are updated in place. */
  render(jobs) {
    let previous = null;
    for (const job of jobs) {
      let card = this.cards.get(job.jobId);
      if (!card) {
        card = buildCard(job.jobId);
        this.cards.set(job.jobId, card);
      }
      this.update(card, job);
      const expectedPosition = previous ? previous.nextSibling : this.list.firstChild;
      if (card !== expectedPosition) this.list.insertBefore(card, expectedPosition);
      previous = card;
    }
    this.emptyNote.hidden = jobs.length > 0;
  }

  update(card, job) {
    const message = job.message || {};
    const name = jobName(job);
    const stage = displayStage(job);
    const label = STAGE_LABELS[stage] || String(stage);
    card.dataset.stage = stage;
    card.querySelector(".job-name").textContent = name;
    card.querySelector(".job-name").title = name;
    const badge = card.querySelector(".stage");
    badge.textContent = label;
    badge.dataset.stage = stage;

    renderUpload(card.querySelector(".upload"), job.upload, name);

    const progress = card.querySelector(".progress");
    const percent = job.message ? clampPercent(message.percent) : 0;
    progress.hidden = !job.message;
    setBar(
      card.querySelector(".overall"),
      percent,
      `Progress of ${name}`,
      `${Math.round(percent)}%, ${label.toLowerCase()}`,
    );
    card.querySelector(".percent").textContent = `${Math.round(percent)}%`;

    renderStats(card.querySelector(".stats"), message);
    renderSegments(card.querySelector(".segments"), message.segments);
    renderError(card.querySelector(".error"), message);
    if (!job.message && job.upload && job.upload.state === "failed") {
      renderError(card.querySelector(".error"), {
        stage: "failed",
        error: { code: "upload_failed", message: job.upload.error, retryable: true },
      });
    }
    renderWarnings(card.querySelector(".warnings"), message.warnings);
    renderOutput(card.querySelector(".output"), job, name);

    const meta = [`Job ${job.jobId}`];
    if (isNumber(message.emittedAt)) meta.push(`updated ${new Date(message.emittedAt).toLocaleTimeString()}`);
    if (job.message) meta.push(`#${message.seq}`);
    card.querySelector(".meta").textContent = meta.join(" · ");
  }
}

const INDICATOR_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

/** The connection indicator; its container is aria-live so changes are announced. */
export function showConnectionState(indicator, state, detail) {
  indicator.dataset.state = state;
  indicator.querySelector(".indicator-label").textContent = INDICATOR_TEXT[state] || state;
  indicator.querySelector(".indicator-detail").textContent = detail || "";
}
