// The live channel over Server-Sent Events (GET /sse), for where a WebSocket does not get
// through: a proxy or firewall that refuses the upgrade, or holds it without passing a byte.
// Each event is one of the socket's server messages as JSON; there are no ops, so a change of
// channels reopens the stream (and the pages vote over REST on either transport). EventSource
// cannot send a header: each opening first trades the access token for a single-use ticket
// (POST /api/live/tickets) that goes in the address. The server ends a stream with
// {"type":"close","code":...}, the socket's close codes.
//
// The same small interface as live-socket.js: new EventStream({channels, resumeFrom, onMessage,
// onClose}), then open(), close(), subscribe(channel), unsubscribe(channel), useToken(token);
// `lastEventId` is where a new stream resumes from (its `last_event_id`: only what changed since).
//
// EventSource hides the server's heartbeat comments, so a connection that died without a word
// (a laptop asleep, a NAT forgetting it) would look quiet for ever. But the server always says
// something before the stream's token runs out: the next `token`, or `close` 4001. A stream
// silent past that moment (and a grace: SILENCE_GRACE_MS, or half the token's life if shorter)
// is dead, and ends as a drop.
import { currentToken } from "./auth.js";
import { isAuthError, post } from "./http.js";

const SILENCE_GRACE_MS = 30000;

/** One stream, for one connection: LiveClient makes a new one for each attempt. */
export class EventStream {
  constructor({ channels, resumeFrom = null, onMessage, onClose }) {
    this.name = "SSE";
    this.channels = channels;
    this.lastEventId = resumeFrom;
    this.onMessage = onMessage;
    this.onClose = onClose;
    this.source = null;
    this.openings = 0;
    this.ended = false;
    this.watchdog = null;
  }

  async open() {
    const opening = ++this.openings;
    let ticket;
    try {
      ({ ticket } = await post("/api/live/tickets", undefined, { Authorization: `Bearer ${currentToken()}` }));
    } catch (error) {
      if (opening === this.openings) this.end(isAuthError(error) ? 4001 : 1006); // 4001: renew the token first
      return;
    }
    if (this.ended || opening !== this.openings) return; // closed, or reopened, while the ticket came
    const query = new URLSearchParams();
    for (const channel of this.channels) query.append("channel", channel);
    query.set("ticket", ticket);
    if (this.lastEventId) query.set("last_event_id", this.lastEventId);
    const source = new EventSource(`/sse?${query}`);
    this.source = source;
    source.onmessage = (event) => {
      if (this.source !== source) return;
      if (event.lastEventId) this.lastEventId = event.lastEventId;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "welcome") this.expectWordWithin(message.expires_at - message.server_time);
      if (message.type === "token") this.expectWordWithin(message.expires_in);
      if (message.type === "close") this.end(message.code);
      else this.onMessage(message);
    };
    // EventSource would try again by itself, with the spent ticket: end here instead, and
    // LiveClient opens a new stream (a new ticket, resuming from lastEventId) after its backoff.
    source.onerror = () => {
      if (this.source === source) this.end(1006);
    };
  }

  /** The server speaks again before `seconds` (its token's life) are out, or the stream is dead. */
  expectWordWithin(seconds) {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => this.end(1006), seconds * 1000 + Math.min(SILENCE_GRACE_MS, seconds * 500));
  }

  /** End it without a word to onClose (the page goes, or LiveClient gave up on it). */
  close() {
    clearTimeout(this.watchdog);
    this.ended = true;
    this.source?.close();
    this.source = null;
  }

  end(code) {
    if (this.ended) return;
    this.close();
    this.onClose(code);
  }

  /** A new stream over the channels as they are now, from `resumeFrom` (null: snapshots of all). */
  reopen(resumeFrom) {
    if (this.ended) return;
    this.source?.close();
    this.source = null;
    this.lastEventId = resumeFrom;
    this.open();
  }

  subscribe() {
    this.reopen(null); // the new channel needs its snapshot
  }

  unsubscribe() {
    this.reopen(this.lastEventId);
  }

  /** Nothing to do: the stream's ticket was its authority, and the server pushes `token` before that runs out. */
  useToken() {}
}
