// A subject's voting window as the pages show it: open or closed now, and the countdown to its
// next scheduled change, on the server's clock rather than this device's.
//
// The server decides: a record's `state` is the truth when it arrives (an admin's "close now"
// sets closes_at to the server's now, which this clock may not have reached yet). The page then
// flips the state itself when a scheduled moment passes on its estimate of the server's clock,
// and the server's `catalog` message confirms it moments later.
import { el } from "./dom.js";

/** The server's clock as this page estimates it, from the `now` of the latest snapshot. */
export const serverClock = {
  offsetMs: 0,
  /** `now`: the server's time (ISO 8601) when it wrote the message that carries it. */
  sync(now) {
    const at = Date.parse(now);
    if (Number.isFinite(at)) this.offsetMs = at - Date.now();
  },
  now() {
    return Date.now() + this.offsetMs;
  },
};

function moment(text) {
  const at = text ? Date.parse(text) : NaN;
  return Number.isFinite(at) ? at : null;
}

/** Open from opens_at (none: since ever) until closes_at (none: for ever), as the server says. */
function stateAt(opensAt, closesAt, now) {
  return (opensAt === null || opensAt <= now) && (closesAt === null || now < closesAt) ? "open" : "closed";
}

const STATE_TEXT = {
  open: "投票进行中 Voting open",
  closed: "投票已关闭 Voting closed",
};

export const VOTING_CLOSED =
  "投票已关闭，这一票没有计入。 Voting is closed: this vote was not counted.";

/** 02:13, 1:02:13, or 3 天 days 02:13:00: a countdown's remaining time, whole seconds up. */
export function countdownText(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const days = Math.floor(total / 86400);
  const hours = Math.floor(total / 3600) % 24;
  const minutes = Math.floor(total / 60) % 60;
  const seconds = total % 60;
  const pad = (value) => String(value).padStart(2, "0");
  const clock = days || hours ? `${days ? pad(hours) : hours}:${pad(minutes)}:${pad(seconds)}` : `${pad(minutes)}:${pad(seconds)}`;
  return days ? `${days}d ${clock}` : clock;
}

/** What a countdown says: "02:13 后开始 Opens in 02:13" or "04:59 后截止 Closes in 04:59". */
export function countdownLabel(next, ms) {
  const left = countdownText(ms);
  return next === "opens" ? `${left} 后开始 Opens in ${left}` : `${left} 后截止 Closes in ${left}`;
}

export function stateText(state) {
  return STATE_TEXT[state] || STATE_TEXT.open;
}

/**
 * One subject's window. `show(record)` with each subject record (REST, snapshot, catalog);
 * `onChange(state)` runs when the state shown changes, `onTick({state, next, ms})` every second
 * while a countdown runs (and once on each change), when given.
 */
export class VotingWindow {
  constructor({ onChange = () => {}, onTick = null } = {}) {
    this.onChange = onChange;
    this.onTick = onTick;
    this.opensAt = null;
    this.closesAt = null;
    this.state = null;
    this.timer = null;
    this.ticker = null;
  }

  /** A subject record ({opens_at, closes_at, state}); a record without them changes nothing. */
  show(record) {
    if (!record || !("opens_at" in record || "closes_at" in record || "state" in record)) return;
    this.opensAt = moment(record.opens_at);
    this.closesAt = moment(record.closes_at);
    const now = serverClock.now();
    this.set(record.state === "open" || record.state === "closed" ? record.state : stateAt(this.opensAt, this.closesAt, now));
  }

  /** The next scheduled moment still ahead on the server's clock: {next: "opens"|"closes", at}, or null. */
  upcoming(now = serverClock.now()) {
    const ahead = [["opens", this.opensAt], ["closes", this.closesAt]].filter(([, at]) => at !== null && at > now);
    if (!ahead.length) return null;
    ahead.sort((a, b) => a[1] - b[1]);
    const [next, at] = ahead[0];
    // Only a moment that changes what is shown: an opening while open (before a close) does not.
    if ((next === "opens") === (this.state === "open")) return ahead[1] ? { next: ahead[1][0], at: ahead[1][1] } : null;
    return { next, at };
  }

  set(state) {
    const changed = state !== this.state;
    this.state = state;
    this.arm();
    if (changed) this.onChange(state);
    this.tick();
  }

  /** Wake at the next moment that changes the state; tick every second meanwhile when counting down. */
  arm() {
    clearTimeout(this.timer);
    clearInterval(this.ticker);
    this.timer = this.ticker = null;
    const coming = this.upcoming();
    if (!coming) return;
    // setTimeout waits at most about 24.8 days; a later moment is checked again then.
    const wait = Math.min(coming.at - serverClock.now(), 2 ** 31 - 1);
    this.timer = setTimeout(() => this.passed(), Math.max(0, wait));
    if (this.onTick) this.ticker = setInterval(() => this.tick(), 1000);
  }

  passed() {
    const now = serverClock.now();
    this.set(stateAt(this.opensAt, this.closesAt, now));
  }

  tick() {
    if (!this.onTick) return;
    const coming = this.upcoming();
    this.onTick({ state: this.state, next: coming ? coming.next : null, ms: coming ? coming.at - serverClock.now() : 0 });
  }

  stop() {
    clearTimeout(this.timer);
    clearInterval(this.ticker);
  }
}

/**
 * A subject's voting state and the countdown beside it, kept current by their VotingWindow:
 * `badge` (data-state="open"|"closed") and `countdown` (data-next="opens"|"closes", hidden when
 * nothing is scheduled). `ids` names them on a page that shows one subject.
 */
export function votingStatus({ tag = "p", className = "voting-status", ids = false, onChange = () => {} } = {}) {
  const badge = el("span", { id: ids ? "voting-state" : null, class: "voting-state", role: ids ? "status" : null });
  const countdown = el("span", { id: ids ? "voting-countdown" : null, class: "voting-countdown", hidden: true });
  const node = el(tag, { class: className }, badge, " ", countdown);
  const voting = new VotingWindow({
    onChange,
    onTick({ state, next, ms }) {
      badge.dataset.state = state;
      badge.textContent = stateText(state);
      countdown.hidden = next === null;
      if (next !== null) {
        countdown.dataset.next = next;
        countdown.textContent = countdownLabel(next, ms);
      } else {
        delete countdown.dataset.next;
        countdown.textContent = "";
      }
    },
  });
  return { node, badge, countdown, voting };
}

/** The voting state line of a page about one subject (#voting-state, #voting-countdown). */
export function votingStatusLine(onChange = () => {}) {
  return votingStatus({ ids: true, onChange });
}

/** A small badge for a subject's row (the dashboard): its state, redrawn by its own window. */
export function stateBadge() {
  const node = el("span", { class: "voting-state voting-badge", hidden: true });
  const voting = new VotingWindow({
    onChange(state) {
      node.hidden = false;
      node.dataset.state = state;
      node.textContent = stateText(state);
    },
  });
  return { node, voting };
}

// -- schedules in local time -----------------------------------------------------------------------

/** A moment (ISO 8601, UTC) as a datetime-local input's value, in this device's time zone; "" for none. */
export function localInputValue(iso) {
  const at = moment(iso);
  if (at === null) return "";
  const date = new Date(at);
  const pad = (value) => String(value).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** A datetime-local input's value (local time) as UTC ISO 8601 with Z; null when empty. */
export function utcFromLocalInput(value) {
  if (!value) return null;
  const at = new Date(value); // a date and time without a zone is local time
  return Number.isNaN(at.getTime()) ? null : at.toISOString();
}
