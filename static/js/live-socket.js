// The live channel over a WebSocket: protocol livevote.v1, the access token as the subprotocol
// `bearer.<jwt>`. Ops (subscribe, unsubscribe, auth, ping) carry an id and settle with their ack,
// pong or error; a ping every 20 s finds a connection that died without a close.
//
// One of LiveClient's two transports (the other is event-stream.js), with the same small
// interface: new LiveSocket({channels, onMessage, onClose}), then open(), close(),
// subscribe(channel), unsubscribe(channel) and useToken(token). `onMessage(message)` gets every
// server message, `onClose(code)` the close code when the connection ends (not after close()).
import { currentToken } from "./auth.js";

const PROTOCOL = "livevote.v1";
const PING_EVERY_MS = 20000;
const REPLY_TIMEOUT_MS = 10000;

function socketUrl() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}/ws`;
}

/** One WebSocket, for one connection: LiveClient makes a new one for each attempt. */
export class LiveSocket {
  constructor({ channels, onMessage, onClose }) {
    this.name = "WebSocket";
    this.channels = channels;
    this.onMessage = onMessage;
    this.onClose = onClose;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map();
    this.pinger = null;
  }

  open() {
    let ws;
    try {
      ws = new WebSocket(socketUrl(), [PROTOCOL, `bearer.${currentToken()}`]);
    } catch {
      setTimeout(() => this.onClose(1006)); // after open() returned, like a refused handshake
      return;
    }
    this.ws = ws;
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "welcome") this.welcomed();
      else if (message.type === "ack" || message.type === "pong" || message.type === "error") this.settle(message);
      this.onMessage(message);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return; // closed by close()
      this.forget();
      this.onClose(event.code);
    };
  }

  /** End it without a word to onClose (the page goes, or LiveClient gave up on it). */
  close() {
    const ws = this.ws;
    this.forget();
    ws?.close(1000);
  }

  forget() {
    this.ws = null;
    clearInterval(this.pinger);
    for (const { reject, timeout } of this.pending.values()) {
      clearTimeout(timeout);
      reject(new Error("socket closed"));
    }
    this.pending.clear();
  }

  welcomed() {
    for (const channel of this.channels) this.subscribe(channel);
    this.pinger = setInterval(() => this.ping(), PING_EVERY_MS);
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
    this.send("subscribe", { channel }).catch(() => {});
  }

  unsubscribe(channel) {
    this.send("unsubscribe", { channel }).catch(() => {});
  }

  /** A token this page got elsewhere (a cookie refresh after a REST 401): the socket lives on it. */
  useToken(token) {
    this.send("auth", { access_token: token }).catch(() => {});
  }
}
