// A subject on a projector (/present/N): each teacher's good and bad votes as large live bars,
// the voting state and its countdown, and the QR code of the voting page (drawn by the server).
//
// Read-only: it always watches on a viewer token, even where an admin is logged in, so the room
// sees what anyone may see (counts a viewer may not see yet show as hidden).
import { LiveClient, VersionedCounts, el, showState, watchOnly } from "./livevote.js";
import { serverClock, votingStatusLine } from "./voting-window.js";
import { countText, isWithheld } from "./widgets.js";

const main = document.getElementById("present");
const subjectNo = Number(main.dataset.subject);
const channel = `subject:${subjectNo}`;
const counts = new VersionedCounts();
/** teacher no -> the row's live parts */
const rows = new Map();
const status = votingStatusLine();

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

/** Show a teacher: a new row in number order, or the name of one already there. */
function showTeacher(teacher) {
  let parts = rows.get(teacher.no);
  if (parts) {
    if (teacher.name !== undefined) parts.name.textContent = teacher.name;
  } else {
    parts = teacherRow(teacher);
    rows.set(teacher.no, parts);
    const list = document.getElementById("bars");
    list.querySelector(".loading, .empty")?.remove();
    const after = [...rows.values()].filter((other) => other.no > teacher.no && other.node.isConnected).sort((a, b) => a.no - b.no)[0];
    list.insertBefore(parts.node, after ? after.node : null);
  }
  counts.apply(teacher);
}

function dropTeacher(no) {
  rows.get(no)?.node.remove();
  rows.delete(no);
}

function showIfEmpty() {
  const list = document.getElementById("bars");
  list.removeAttribute("aria-busy");
  if (rows.size) return;
  list.querySelector(".loading")?.remove();
  if (!list.querySelector(".empty")) list.append(el("div", { class: "empty" }, "这个科目还没有老师。 No teachers in this subject yet."));
}

/** Every bar against the largest count shown, so that the leader fills its track. */
function render() {
  let largest = 0;
  for (const parts of rows.values()) {
    const state = counts.get(parts.no);
    for (const value of [state?.good_count, state?.bad_count]) if (!isWithheld(value)) largest = Math.max(largest, value);
  }
  for (const parts of rows.values()) {
    const state = counts.get(parts.no) || { good_count: 0, bad_count: 0 };
    for (const [side, value] of [[parts.good, state.good_count], [parts.bad, state.bad_count]]) {
      const withheld = isWithheld(value);
      side.count.textContent = countText(value);
      side.fill.hidden = withheld;
      side.fill.style.width = withheld || !largest ? "0%" : `${(100 * value) / largest}%`;
      side.node.dataset.count = withheld ? "hidden" : String(value);
    }
  }
}

function applySnapshot(message) {
  if (message.now) serverClock.sync(message.now);
  if (message.subject) showSubject(message.subject);
  const listed = new Set();
  for (const teacher of message.teachers || []) {
    listed.add(teacher.no);
    showTeacher(teacher);
  }
  for (const no of [...rows.keys()]) if (!listed.has(no)) dropTeacher(no);
  showIfEmpty();
}

function showSubject(record) {
  if (record.name !== undefined) document.getElementById("subject-name").textContent = record.name;
  status.voting.show(record);
}

function applyCatalog(message) {
  if (message.kind === "subject") {
    if (message.record?.no === subjectNo) showSubject(message.record);
    if (message.removed === subjectNo) {
      for (const no of [...rows.keys()]) dropTeacher(no);
      document.getElementById("bars").replaceChildren(el("div", { class: "empty" }, "这个科目已被删除。 This subject was removed."));
    }
    return;
  }
  if (message.record && message.record.subject === subjectNo) showTeacher(message.record);
  else dropTeacher(message.record ? message.record.no : message.removed);
  showIfEmpty();
}

function onMessage(message) {
  if (message.channel !== channel) return;
  if (message.watching !== undefined) {
    const line = document.getElementById("watching");
    line.textContent = `${message.watching} 人在看 · ${message.watching} watching`;
    line.hidden = false;
  }
  if (message.type === "snapshot") applySnapshot(message);
  else if (message.type === "catalog") applyCatalog(message);
  else if (message.type === "votes") for (const update of message.updates || []) counts.apply(update);
  render();
}

async function start() {
  document.getElementById("subject-name").after(status.node);
  status.voting.show({ state: main.dataset.state, opens_at: main.dataset.opensAt || null, closes_at: main.dataset.closesAt || null });
  showState("connecting");
  try {
    await watchOnly();
  } catch {
    // no viewer token now: the socket asks again as it reconnects
  }
  new LiveClient({ channels: [channel], onState: showState, onMessage }).start();
}

start();
