// The Tidings browser client in one ES module: import it from a page, no build step.
//
//   <script type="module">
//     import { fetchLocalToken, watchJobs } from "/js/tidings.js";
//     const stop = watchJobs({
//       url: "ws://127.0.0.1:3001/dev",               // the stack's WebSocket URL (no token in it)
//       getToken: () => fetchLocalToken("demo"),       // from a page at the site's root; deployed: your API
//       topics: ["user:demo"],                         // or ["job:JOB_ID"]
//       onJob: (job) => console.log(job.jobId, job.stage, job.percent),
//     });
//   </script>
//
// The same rules as the Python client (tidings/jobs.py) and docs/protocol.md: the token travels
// as a subprotocol, never in the URL; every (re)connect subscribes again and the snapshot catches
// up; the seq rule keeps the highest seq per job, so a job never goes back. docs/clients.md.

import { TidingsConnection } from "./connection.js";
import { JobStore } from "./jobs.js";

export { decodeTokenPayload, fetchLocalConfig, fetchLocalToken, secondsUntilExpiry } from "./config.js";
export { SUBPROTOCOL, TidingsConnection, backoffDelay } from "./connection.js";
export { JobStore, STAGES, TERMINAL_STAGES, isJobMessage } from "./jobs.js";

/**
 * Follow jobs: connects, subscribes to `topics`, and calls `onJob(message)` with each job's newest
 * state (snapshots and live updates, after the seq rule). Returns a function that disconnects.
 *
 * @param {object} options
 * @param {string} options.url WebSocket URL of the stack
 * @param {() => Promise<string>} options.getToken a token for the next connection attempt
 * @param {string[]} options.topics "job:ID" or "user:ID"
 * @param {(job: object) => void} options.onJob each accepted job message
 * @param {(state: string, detail?: string) => void} [options.onState] connection state changes
 * @param {JobStore} [options.store] where job states are kept (a new store by default)
 */
export function watchJobs({ url, getToken, topics, onJob, onState = () => {}, store = new JobStore() }) {
  const connection = new TidingsConnection({
    url,
    getToken,
    topics,
    onState,
    onMessage: (message) => {
      for (const jobId of applyMessage(store, message)) onJob(store.jobs.get(jobId).message);
    },
  });
  connection.start();
  return () => connection.stop();
}

/** Apply one server message to `store`; returns the jobIds it moved forward (pure, no I/O). */
export function applyMessage(store, message) {
  if (message && message.type === "snapshot") return store.applySnapshot(message.jobs);
  return store.apply(message) ? [message.jobId] : [];
}
