// The WebSocket to vtuberd's /client-ws (Open-LLM-VTuber protocol): JSON text frames,
// automatic reconnect with capped exponential backoff, a heartbeat every 10 s.

const HEARTBEAT_MS = 10_000;
const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 15_000;

export class Connection {
  /**
   * @param {string} url ws:// or wss:// URL
   * @param {{onMessage: (msg: object) => void, onStatus: (status: string, detail?: string) => void}} handlers
   *   status is one of "connecting", "open", "closed" (closed carries the retry delay in detail)
   */
  constructor(url, { onMessage, onStatus }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.ws = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.heartbeatTimer = null;
    this.stopped = false;
    window.addEventListener('online', () => this.retryNow());
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') this.retryNow();
    });
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.onStatus('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.scheduleRetry(String(err));
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => {
      if (this.ws !== ws) return;
      this.attempt = 0;
      this.onStatus('open');
      clearInterval(this.heartbeatTimer);
      this.heartbeatTimer = setInterval(() => this.send({ type: 'heartbeat' }), HEARTBEAT_MS);
    });
    ws.addEventListener('message', (ev) => {
      if (this.ws !== ws || typeof ev.data !== 'string') return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        console.warn('vtuber: ignoring a frame that is not JSON');
        return;
      }
      if (msg && typeof msg === 'object' && typeof msg.type === 'string') this.onMessage(msg);
    });
    ws.addEventListener('close', (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.heartbeatTimer);
      this.heartbeatTimer = null;
      let why = ev.reason || (ev.code === 1006 ? 'connection lost' : `closed (${ev.code})`);
      if (ev.code === 1008 || ev.code === 4001 || ev.code === 4003) why = `refused: ${ev.reason || 'not allowed'} (check the token)`;
      this.scheduleRetry(why);
    });
    // 'error' is always followed by 'close'; nothing to do here.
  }

  scheduleRetry(why) {
    if (this.stopped) return;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** this.attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    this.onStatus('closed', `${why}; retrying in ${(delay / 1000).toFixed(1)} s`);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** Reconnect at once when waiting for a retry (network back, tab visible again). */
  retryNow() {
    if (this.retryTimer !== null && !this.ws) {
      this.attempt = 0;
      this.connect();
    }
  }

  /** Sends one message; false when not connected (the message is dropped). */
  send(msg) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }
}
