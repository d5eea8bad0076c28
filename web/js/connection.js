// A WebSocket to Tidings that stays up: reconnects with exponential backoff and full jitter,
// resubscribes after every (re)connect, and pings so API Gateway's 10-minute idle limit never
// closes a quiet connection.

export const SUBPROTOCOL = "tidings.v1";

/**
 * Delay before reconnect attempt `attempt` (0-based): a uniform random value between 0 and
 * min(capMs, baseMs * 2^attempt) ("full jitter"), so clients dropped together do not return together.
 */
export function backoffDelay(attempt, baseMs, capMs, random = Math.random) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/**
 * States reported to `onState`: "connecting" (first attempt), "live" (subscribed), "reconnecting"
 * (waiting for or making another attempt), "offline" (the browser is offline, or the token
 * cannot be used any more; `detail` says why).
 */
export class TidingsConnection {
  /**
   * @param {object} options
   * @param {string} options.url WebSocket URL (no token in it)
   * @param {() => Promise<string>} options.getToken token for the next attempt (may fetch a fresh
   *   one); a rejection with `permanent: true` stops retrying (offline), any other is retried
   * @param {string[]} options.topics topics to subscribe to after every connect
   * @param {(message: object) => void} options.onMessage every server message, parsed
   * @param {(state: string, detail?: string) => void} options.onState connection state changes
   * @param {number} [options.heartbeatMs] ping interval (default 5 minutes)
   * @param {number} [options.backoffBaseMs]
   * @param {number} [options.backoffCapMs]
   */
  constructor(options) {
    this.url = options.url;
    this.getToken = options.getToken;
    this.topics = options.topics;
    this.onMessage = options.onMessage;
    this.onState = options.onState;
    this.heartbeatMs = options.heartbeatMs ?? 5 * 60 * 1000;
    this.backoffBaseMs = options.backoffBaseMs ?? 500;
    this.backoffCapMs = options.backoffCapMs ?? 30 * 1000;
    this.attempt = 0;
    this.socket = null;
    this.stopped = true;
    this.retryTimer = null;
    this.heartbeatTimer = null;
    this.pingId = 0;
    this.awaitingPong = false;
    this.state = "";
    // Bumped whenever the current attempt is abandoned, so a token fetch that resolves late
    // cannot open a second socket.
    this.generation = 0;
    this.onBrowserOnline = () => this.reconnectNow();
    this.onBrowserOffline = () => this.dropForOffline();
  }

  start() {
    this.stopped = false;
    window.addEventListener("online", this.onBrowserOnline);
    window.addEventListener("offline", this.onBrowserOffline);
    this.setState("connecting");
    this.open();
  }

  stop() {
    this.stopped = true;
    this.generation += 1;
    window.removeEventListener("online", this.onBrowserOnline);
    window.removeEventListener("offline", this.onBrowserOffline);
    this.clearTimers();
    if (this.socket) this.socket.close(1000, "page closed the connection");
    this.socket = null;
  }

  /** Send a client frame; false when no connection is open. */
  send(frame) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  setState(state, detail = "") {
    if (state === this.state && !detail) return;
    this.state = state;
    this.onState(state, detail);
  }

  async open() {
    if (this.stopped) return;
    const generation = ++this.generation;
    if (navigator.onLine === false) {
      this.setState("offline", "The browser is offline; waiting for the network.");
      return;
    }
    let token;
    try {
      token = await this.getToken();
    } catch (error) {
      if (generation !== this.generation) return;
      const reason = String(error && error.message ? error.message : error);
      if (error && error.permanent) {
        // e.g. an expired pasted token: retrying with it cannot succeed
        this.setState("offline", reason);
      } else {
        // e.g. the local stack is restarting and its token endpoint is down for a moment
        this.scheduleReconnect(reason);
      }
      return;
    }
    if (this.stopped || generation !== this.generation) return;
    let socket;
    try {
      // The token travels as the second subprotocol, never in the URL.
      socket = new WebSocket(this.url, [SUBPROTOCOL, token]);
    } catch (error) {
      this.setState("offline", `Cannot open ${this.url}: ${error.message}`);
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      if (socket !== this.socket) return;
      for (const topic of this.topics) this.send({ action: "subscribe", topic });
      this.startHeartbeat();
    });
    socket.addEventListener("message", (event) => {
      if (socket !== this.socket) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return; // not JSON: nothing the page can show
      }
      if (message === null || typeof message !== "object") return;
      if (message.type === "subscribed") {
        this.attempt = 0;
        this.setState("live");
      } else if (message.type === "pong") {
        this.awaitingPong = false;
      }
      this.onMessage(message);
    });
    socket.addEventListener("close", () => {
      if (socket !== this.socket) return;
      this.socket = null;
      this.scheduleReconnect();
    });
    // "error" is always followed by "close", which does the work.
  }

  scheduleReconnect(reason = "") {
    this.clearTimers();
    if (this.stopped) return;
    if (navigator.onLine === false) {
      this.setState("offline", "The browser is offline; waiting for the network.");
      return;
    }
    const delay = backoffDelay(this.attempt, this.backoffBaseMs, this.backoffCapMs);
    this.attempt += 1;
    const retry = `Retrying in ${Math.ceil(delay / 1000)} s (attempt ${this.attempt}).`;
    this.setState("reconnecting", reason ? `${reason}. ${retry}` : retry);
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  reconnectNow() {
    if (this.stopped) return;
    this.generation += 1;
    this.clearTimers();
    if (this.socket) {
      const old = this.socket;
      this.socket = null;
      old.close();
    }
    this.attempt = 0;
    this.setState("reconnecting");
    this.open();
  }

  dropForOffline() {
    this.generation += 1;
    this.clearTimers();
    if (this.socket) {
      const old = this.socket;
      this.socket = null;
      old.close();
    }
    this.setState("offline", "The browser is offline; waiting for the network.");
  }

  startHeartbeat() {
    clearInterval(this.heartbeatTimer);
    this.awaitingPong = false;
    this.heartbeatTimer = setInterval(() => {
      if (this.awaitingPong && this.socket) {
        // No pong for a whole interval: the connection is dead even if the browser has not
        // noticed yet (a half-open TCP connection). Drop it and reconnect.
        const dead = this.socket;
        this.socket = null;
        dead.close();
        this.scheduleReconnect();
        return;
      }
      this.pingId += 1;
      this.awaitingPong = this.send({ action: "ping", id: this.pingId });
    }, this.heartbeatMs);
  }

  clearTimers() {
    clearTimeout(this.retryTimer);
    clearInterval(this.heartbeatTimer);
    this.retryTimer = null;
    this.heartbeatTimer = null;
  }
}
