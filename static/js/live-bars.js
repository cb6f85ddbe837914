// What the read-only pages share (the projector, /present/N, and the embed pages, /embed/...):
// the live channel on a viewer token, a subject's own record as its channel tells it, and
// teachers as live bars of good and bad votes.
//
// Read-only pages always watch on a viewer token, even where an admin is logged in, so that they
// show what anyone may see: counts a viewer may not see yet show as hidden.
import { LiveClient, VersionedCounts, el, showState, watchOnly } from "./livevote.js";
import { serverClock } from "./voting-window.js";
import { countText, isWithheld } from "./widgets.js";

/** Open the live channel on `channels` as a viewer; `onMessage(message)` gets every message. */
export async function watchLive(channels, onMessage) {
  showState("connecting");
  try {
    await watchOnly();
  } catch {
    // no viewer token now: the socket asks again as it reconnects
  }
  return new LiveClient({ channels, onState: showState, onMessage }).start();
}

/**
 * What `message` says of subject `no` itself: `show(record)` with its record (a snapshot's, or an
 * admin's change), `removed()` once it is deleted. A snapshot's `now` sets the server's clock
 * first, so that the voting state and its countdown are right.
 */
export function followSubject(message, no, { show, removed = () => {} }) {
  if (message.type === "snapshot") {
    if (message.now) serverClock.sync(message.now);
    if (message.subject) show(message.subject);
  } else if (message.type === "catalog" && message.kind === "subject") {
    if (message.record?.no === no) show(message.record);
    if (message.removed === no) removed();
  }
}

function bar(value) {
  const fill = el("span", { class: `fill fill-${value}` });
  const count = el("span", { class: `count count-${value}` }, "0");
  return { node: el("div", { class: `track track-${value}` }, fill, count), fill, count };
}

function teacherRow(teacher) {
  const name = el("div", { class: "teacher-name", translate: "no" }, teacher.name);
  const good = bar("good");
  const bad = bar("bad");
  const node = el("div", { class: "bar-row", dataset: { no: teacher.no } }, name, el("div", { class: "tracks" }, good.node, bad.node));
  return { no: teacher.no, node, name, good, bad };
}

/**
 * The teachers of one channel as bars in `list`, one row each in number order: `handle(message)`
 * with each message of the live channel keeps them current. `keeps(teacher)` says whether a
 * teacher record belongs here (a teacher that moves elsewhere is dropped); `emptyText` is what the
 * list says without any.
 */
export class LiveBars {
  constructor({ list, channel, keeps, emptyText }) {
    this.list = list;
    this.channel = channel;
    this.keeps = keeps;
    this.emptyText = emptyText;
    this.counts = new VersionedCounts();
    /** teacher no -> the row's live parts */
    this.rows = new Map();
  }

  handle(message) {
    if (message.channel !== this.channel) return;
    if (message.type === "snapshot") this.applySnapshot(message);
    else if (message.type === "catalog" && message.kind === "teacher") this.applyCatalog(message);
    else if (message.type === "votes") for (const update of message.updates || []) this.counts.apply(update);
    this.render();
  }

  /** Drop every row and say `text` instead (the subject was removed). */
  clear(text) {
    for (const no of [...this.rows.keys()]) this.drop(no);
    this.list.replaceChildren(el("div", { class: "empty" }, text));
  }

  /** A snapshot is the whole channel: exactly the teachers it lists. */
  applySnapshot(message) {
    const listed = new Set();
    for (const teacher of message.teachers || []) {
      listed.add(teacher.no);
      this.show(teacher);
    }
    for (const no of [...this.rows.keys()]) if (!listed.has(no)) this.drop(no);
    this.showIfEmpty();
  }

  applyCatalog(message) {
    if (message.record && this.keeps(message.record)) this.show(message.record);
    else this.drop(message.record ? message.record.no : message.removed);
    this.showIfEmpty();
  }

  /** Show a teacher: a new row in number order, or the name of one already there. */
  show(teacher) {
    let parts = this.rows.get(teacher.no);
    if (parts) {
      if (teacher.name !== undefined) parts.name.textContent = teacher.name;
    } else {
      parts = teacherRow(teacher);
      this.rows.set(teacher.no, parts);
      this.list.querySelector(".loading, .empty")?.remove();
      const after = [...this.rows.values()]
        .filter((other) => other.no > teacher.no && other.node.isConnected)
        .sort((a, b) => a.no - b.no)[0];
      this.list.insertBefore(parts.node, after ? after.node : null);
    }
    this.counts.apply(teacher);
  }

  drop(no) {
    this.rows.get(no)?.node.remove();
    this.rows.delete(no);
  }

  showIfEmpty() {
    this.list.removeAttribute("aria-busy");
    if (this.rows.size) return;
    this.list.querySelector(".loading")?.remove();
    if (!this.list.querySelector(".empty")) this.list.append(el("div", { class: "empty" }, this.emptyText));
  }

  /** Every bar against the largest count shown, so that the leader fills its track. */
  render() {
    let largest = 0;
    for (const parts of this.rows.values()) {
      const state = this.counts.get(parts.no);
      for (const value of [state?.good_count, state?.bad_count]) if (!isWithheld(value)) largest = Math.max(largest, value);
    }
    for (const parts of this.rows.values()) {
      const state = this.counts.get(parts.no) || { good_count: 0, bad_count: 0 };
      for (const [side, value] of [[parts.good, state.good_count], [parts.bad, state.bad_count]]) {
        const withheld = isWithheld(value);
        side.count.textContent = countText(value);
        side.fill.hidden = withheld;
        side.fill.style.width = withheld || !largest ? "0%" : `${(100 * value) / largest}%`;
        side.node.dataset.count = withheld ? "hidden" : String(value);
      }
    }
  }
}
