// The live channel: one WebSocket per page, protocol livevote.v1, the access token as the
// subprotocol `bearer.<jwt>`. Pushed `token` messages replace the access token, for the socket
// and for REST alike. It reconnects with exponential backoff and jitter, re-subscribes, and
// renews its token first (by cookie, or a viewer token) when the close code was 4001 or the
// socket was refused.
import { currentToken, goLogin, isWatchingOnly, onTokenChange, renewToken, setAccessToken } from "./auth.js";
import { isAuthError } from "./http.js";
import { stats } from "./stats.js";

const PROTOCOL = "livevote.v1";
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15000;
const PING_EVERY_MS = 20000;
const REPLY_TIMEOUT_MS = 10000;

function socketUrl() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}/ws`;
}

/**
 * One WebSocket that stays connected while the page is open.
 * `onMessage(message)` gets every server message; `onState(state)` gets
 * "connecting", "live" or "reconnecting".
 */
export class LiveClient {
  constructor({ channels = [], onMessage = () => {}, onState = () => {} } = {}) {
    this.channels = new Set(channels);
    this.onMessage = onMessage;
    this.onState = onState;
    this.ws = null;
    this.state = "connecting";
    this.failures = 0;
    this.nextId = 1;
    this.pending = new Map();
    this.timer = null;
    this.pinger = null;
    this.stopped = false;
    this.revoked = false;
    this.needsFreshToken = false;
    this.stopListening = null;
    // A token this page got elsewhere (a cookie refresh after a REST 401) is handed to the socket too.
    this.onToken = (token, source) => {
      if (token && source !== this && this.state === "live") this.send("auth", { access_token: token }).catch(() => {});
    };
  }

  start() {
    this.stopListening = onTokenChange(this.onToken);
    window.addEventListener("pagehide", () => this.stop());
    // Back from the back/forward cache: the socket was closed on the way out, start afresh.
    window.addEventListener("pageshow", (event) => {
      if (event.persisted) window.location.reload();
    });
    this.connect();
    return this;
  }

  stop() {
    this.stopped = true;
    this.stopListening?.();
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    if (this.ws) this.ws.close(1000);
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.onState(state);
  }

  async connect() {
    if (this.stopped) return;
    this.setState(this.failures ? "reconnecting" : "connecting");
    if (this.needsFreshToken || !currentToken()) {
      try {
        await renewToken();
        this.needsFreshToken = false;
      } catch (error) {
        if (isAuthError(error) && !isWatchingOnly()) {
          goLogin();
          return;
        }
        this.retryLater();
        return;
      }
    }
    let ws;
    try {
      ws = new WebSocket(socketUrl(), [PROTOCOL, `bearer.${currentToken()}`]);
    } catch {
      this.retryLater();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this.handle(message);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pinger);
      for (const { reject, timeout } of this.pending.values()) {
        clearTimeout(timeout);
        reject(new Error("socket closed"));
      }
      this.pending.clear();
      if (this.revoked || event.code === 4003) {
        goLogin("revoked");
        return;
      }
      if (this.stopped) return;
      this.needsFreshToken = event.code === 4001 || !opened;
      this.retryLater();
    };
  }

  retryLater() {
    if (this.stopped) return;
    this.failures += 1;
    this.setState("reconnecting");
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** (this.failures - 1));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  handle(message) {
    switch (message.type) {
      case "welcome":
        stats.connects += 1;
        this.failures = 0;
        this.setState("live");
        for (const channel of this.channels) this.send("subscribe", { channel }).catch(() => {});
        clearInterval(this.pinger);
        this.pinger = setInterval(() => this.ping(), PING_EVERY_MS);
        break;
      case "token":
        stats.tokenPushes += 1;
        setAccessToken(message.access_token, null, this);
        break;
      case "tokens":
        setAccessToken(message.access_token, message.user, this);
        break;
      case "revoked":
        this.revoked = true;
        goLogin("revoked");
        break;
      case "ack":
      case "pong":
      case "error":
        this.settle(message);
        break;
      default:
        break;
    }
    this.onMessage(message);
  }

  settle(message) {
    const waiter = message.id === undefined ? undefined : this.pending.get(message.id);
    if (!waiter) return;
    this.pending.delete(message.id);
    clearTimeout(waiter.timeout);
    if (message.type === "error") waiter.reject(Object.assign(new Error(message.message), { code: message.code }));
    else waiter.resolve(message);
  }

  /** Send an op; resolves with its ack or pong, rejects with its error. */
  send(op, fields = {}) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error("not connected"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timeout = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no reply to ${op}`));
      }, REPLY_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timeout });
      ws.send(JSON.stringify({ op, id, ...fields }));
    });
  }

  async ping() {
    const ws = this.ws;
    try {
      await this.send("ping");
    } catch {
      // No pong in time: the connection is dead although no close came. Start over.
      if (this.ws === ws && ws) ws.close(4000);
    }
  }

  subscribe(channel) {
    this.channels.add(channel);
    if (this.state === "live") this.send("subscribe", { channel }).catch(() => {});
  }

  unsubscribe(channel) {
    this.channels.delete(channel);
    if (this.state === "live") this.send("unsubscribe", { channel }).catch(() => {});
  }
}
