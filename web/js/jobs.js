// The page's model of the user's jobs: the latest applied message per job, in display order.
// Pure logic, no DOM: the view reads it after every change.

/** Stages in pipeline order; `completed` and `failed` are terminal. */
export const STAGES = ["queued", "probing", "transcoding", "merging", "completed", "failed"];
export const TERMINAL_STAGES = new Set(["completed", "failed"]);

const JOB_MESSAGE_TYPES = new Set(["progress", "completed", "failed"]);

/** True when `message` looks like a job message the page can apply. */
export function isJobMessage(message) {
  return (
    message !== null &&
    typeof message === "object" &&
    JOB_MESSAGE_TYPES.has(message.type) &&
    typeof message.jobId === "string" &&
    message.jobId.length > 0 &&
    Number.isInteger(message.seq) &&
    message.seq >= 0
  );
}

export class JobStore {
  constructor() {
    /** @type {Map<string, {jobId: string, message: object|null, upload: object|null}>} */
    this.jobs = new Map();
    /** jobIds, newest first */
    this.order = [];
  }

  /** The entry for `jobId`, created on top of the list when the page has not seen it yet. */
  entry(jobId) {
    let job = this.jobs.get(jobId);
    if (!job) {
      job = { jobId, message: null, upload: null };
      this.jobs.set(jobId, job);
      this.order.unshift(jobId);
    }
    return job;
  }

  /**
   * Apply one job message under the seq rule: keep the highest seq per job and ignore any
   * message whose seq is lower than or equal to the last applied one (delivery is at least once
   * and a snapshot can arrive after a newer live update). Returns true when the message changed
   * the job.
   */
  apply(message) {
    if (!isJobMessage(message)) return false;
    const known = this.jobs.get(message.jobId);
    if (known && known.message && message.seq <= known.message.seq) return false;
    this.entry(message.jobId).message = message;
    return true;
  }

  /**
   * Apply a snapshot (newest first). Jobs the page has not seen go on top in the snapshot's
   * order; known jobs keep their place. Returns the jobIds that changed.
   */
  applySnapshot(jobs) {
    if (!Array.isArray(jobs)) return [];
    const unseen = [];
    const changed = [];
    for (const message of jobs) {
      if (!isJobMessage(message)) continue;
      if (!this.jobs.has(message.jobId)) unseen.push(message.jobId);
      if (this.apply(message)) changed.push(message.jobId);
    }
    // apply() put each unseen job on top, reversing their order; restore the snapshot's order.
    if (unseen.length > 0) {
      const unseenSet = new Set(unseen);
      this.order = unseen.concat(this.order.filter((id) => !unseenSet.has(id)));
    }
    return changed;
  }

  /** Record upload state for a job the page is uploading (merged into that job's card). */
  setUpload(jobId, upload) {
    const job = this.entry(jobId);
    job.upload = { ...(job.upload || {}), ...upload };
    return job;
  }

  /** Jobs newest first. */
  list() {
    return this.order.map((id) => this.jobs.get(id));
  }
}
