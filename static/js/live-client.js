// The live channel of a page: a WebSocket (live-socket.js) where one gets through, else a stream
// of Server-Sent Events (event-stream.js), behind one small interface. Pushed `token` messages
// replace the access token, for the live channel and for REST alike. It reconnects with
// exponential backoff and jitter, re-subscribes, and renews its token first (by cookie, or a
// viewer token) when the close code was 4001 (a stream's ticket refused counts as one) or the
// token has run out by the server's clock. Not on every failed attempt: after a restart every
// page comes back at once, and each renewal is a write to the session store (or a viewer
// token out of the address's budget, which a school behind one address shares).
//
// Which transport: every attempt tries the WebSocket first, and falls back to the stream at once
// when the socket closes before the server's `welcome`, or has no `welcome` within
// SOCKET_DEADLINE_MS (a proxy holding the upgrade open). A page whose socket was live before
// allows RECONNECT_DEADLINE_MS: sockets get through its proxy, and in a reconnect storm the
// server admits handshakes in turn, so a slow one is waiting, not stuck. A page whose stream went live while no
// socket ever had in this browser session remembers that (sessionStorage), and its later pages
// go straight to the stream; once a socket was live in the session, every attempt tries it first.
import {
  currentToken, goLogin, isWatchingOnly, onTokenChange, renewToken, setAccessToken, tokenExpiresAt,
} from "./auth.js";
import { EventStream } from "./event-stream.js";
import { isAuthError } from "./http.js";
import { LiveSocket } from "./live-socket.js";
import { stats } from "./stats.js";

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 8000;
/** How long a socket may take to go live before the stream is tried: a healthy one takes milliseconds. */
const SOCKET_DEADLINE_MS = 3000;
const RECONNECT_DEADLINE_MS = 10000;
/** sessionStorage: the transport that went live first in this browser session, "WebSocket" once a socket has. */
const TRANSPORT_KEY = "livevote.transport";

function rememberedTransport() {
  try {
    return sessionStorage.getItem(TRANSPORT_KEY);
  } catch { // storage turned off: no memory, the socket is tried first
    return null;
  }
}

/** A transport went live: remember it, unless a socket already was live in this session. */
function rememberTransport(name) {
  const known = rememberedTransport();
  if (known === "WebSocket" || known === name) return;
  try {
    sessionStorage.setItem(TRANSPORT_KEY, name);
  } catch { // storage turned off: nothing to remember with
  }
}

/**
 * The live channel, connected while the page is open.
 * `onMessage(message)` gets every server message; `onState(state, transport)` gets
 * "connecting", "live" or "reconnecting", and with "live" the transport's name ("WebSocket" or "SSE").
 */
export class LiveClient {
  constructor({ channels = [], onMessage = () => {}, onState = () => {} } = {}) {
    this.channels = new Set(channels);
    this.onMessage = onMessage;
    this.onState = onState;
    this.transport = null;
    this.live = false;
    this.state = "connecting";
    this.failures = 0;
    this.timer = null;
    this.deadline = null;
    this.resumeFrom = null;
    this.stopped = false;
    this.revoked = false;
    this.needsFreshToken = false;
    this.socketWasLive = false;
    /** The server's clock less this browser's, as of the last `welcome`. */
    this.clockSkewMs = 0;
    this.stopListening = null;
    // A token this page got elsewhere (a cookie refresh after a REST 401) is handed to the live channel too.
    this.onToken = (token, source) => {
      if (token && source !== this && this.state === "live") this.transport?.useToken(token);
    };
  }

  start() {
    this.stopListening = onTokenChange(this.onToken);
    window.addEventListener("pagehide", () => this.stop());
    // Back from the back/forward cache: the connection was closed on the way out, start afresh.
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
    clearTimeout(this.deadline);
    this.transport?.close();
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.onState(state, state === "live" ? this.transport.name : null);
  }

  async connect() {
    if (this.stopped) return;
    this.setState(this.failures ? "reconnecting" : "connecting");
    if (this.needsFreshToken || tokenExpiresAt(this.clockSkewMs) <= Date.now()) {
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
    if (rememberedTransport() === "SSE") {
      this.open(EventStream);
      return;
    }
    this.open(LiveSocket);
    this.deadline = setTimeout(() => this.fallBack(), this.socketWasLive ? RECONNECT_DEADLINE_MS : SOCKET_DEADLINE_MS);
  }

  open(Transport) {
    const transport = new Transport({
      channels: this.channels,
      resumeFrom: this.resumeFrom,
      onMessage: (message) => {
        if (this.transport === transport) this.handle(message);
      },
      onClose: (code) => this.closed(transport, code),
    });
    this.transport = transport;
    this.live = false;
    transport.open();
  }

  /** The socket did not go live: the stream, at once (the server may well be fine). */
  fallBack() {
    clearTimeout(this.deadline);
    this.transport?.close();
    this.open(EventStream);
  }

  closed(transport, code) {
    if (this.transport !== transport) return;
    clearTimeout(this.deadline);
    const wasLive = this.live;
    this.transport = null;
    this.live = false;
    if (transport instanceof EventStream) this.resumeFrom = transport.lastEventId;
    if (this.revoked || code === 4003) {
      goLogin("revoked");
      return;
    }
    if (this.stopped) return;
    if (transport instanceof LiveSocket && !wasLive) {
      this.fallBack();
      return;
    }
    // 1001 (the server is going away), 4008 (too slow), a drop: again after the backoff.
    this.needsFreshToken = code === 4001;
    this.retryLater();
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
        this.live = true;
        clearTimeout(this.deadline);
        this.clockSkewMs = message.server_time * 1000 - Date.now();
        if (this.transport instanceof LiveSocket) this.socketWasLive = true;
        rememberTransport(this.transport.name);
        if (this.transport instanceof LiveSocket) this.resumeFrom = null; // a stream's mark is stale now
        this.setState("live");
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
      default:
        break;
    }
    this.onMessage(message);
  }

  subscribe(channel) {
    this.channels.add(channel);
    if (this.live) this.transport.subscribe(channel);
  }

  unsubscribe(channel) {
    this.channels.delete(channel);
    if (this.live) this.transport.unsubscribe(channel);
  }
}
