// Starting a job: POST {api}/jobs, then PUT the file to the presigned URL it returns.
// XMLHttpRequest (not fetch) because only it reports upload progress.

export class UploadError extends Error {}

function apiUrl(base, path) {
  return base.replace(/\/+$/, "") + path;
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && typeof body.message === "string") return body.message;
  } catch {
    // not JSON: the status says enough
  }
  return `${response.status} ${response.statusText}`.trim();
}

/** Create the job; returns {jobId, upload: {url, method, headers}}. */
export async function createJob(api, token, file) {
  const response = await fetch(apiUrl(api, "/jobs"), {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({
      filename: file.name,
      contentType: file.type || "application/octet-stream",
      size: file.size,
    }),
  });
  if (response.status !== 201) {
    throw new UploadError(`Could not create the job: ${await errorText(response)}`);
  }
  const body = await response.json();
  if (!body || typeof body.jobId !== "string" || !body.upload || typeof body.upload.url !== "string") {
    throw new UploadError("The API's answer has no jobId or upload URL.");
  }
  return body;
}

/** PUT the file; `onProgress(loaded, total)` as bytes go out. Resolves when the server accepted it. */
export function putFile(upload, file, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open(upload.method || "PUT", upload.url);
    const headers = upload.headers && typeof upload.headers === "object" ? upload.headers : {};
    for (const [name, value] of Object.entries(headers)) {
      // the browser sets Content-Length from the file itself (it is signed: the sizes must agree)
      if (name.toLowerCase() !== "content-length") request.setRequestHeader(name, String(value));
    }
    request.upload.addEventListener("progress", (event) => {
      onProgress(event.loaded, event.lengthComputable ? event.total : file.size);
    });
    request.addEventListener("load", () => {
      if (request.status >= 200 && request.status < 300) resolve();
      else reject(new UploadError(`The upload was refused: ${request.status} ${request.statusText}`.trim()));
    });
    request.addEventListener("error", () => reject(new UploadError("The upload failed (network error).")));
    request.addEventListener("abort", () => reject(new UploadError("The upload was cancelled.")));
    request.send(file);
  });
}

/** GET {api}/jobs/{id}: the job with presigned output.url / output.posterUrl when available. */
export async function fetchJob(api, token, jobId) {
  const response = await fetch(apiUrl(api, `/jobs/${encodeURIComponent(jobId)}`), {
    headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
  });
  if (!response.ok) throw new UploadError(`Could not read job ${jobId}: ${await errorText(response)}`);
  return response.json();
}
