// A subject on a projector (/present/N): each teacher's good and bad votes as large live bars,
// the voting state and its countdown, and the QR code of the voting page (drawn by the server).
// Read-only, on a viewer token (live-bars.js).
import { LiveBars, followSubject, watchLive } from "./live-bars.js";
import { votingStatusLine } from "./voting-window.js";

const main = document.getElementById("present");
const subjectNo = Number(main.dataset.subject);
const channel = `subject:${subjectNo}`;
const status = votingStatusLine();
const bars = new LiveBars({
  list: document.getElementById("bars"),
  channel,
  keeps: (teacher) => teacher.subject === subjectNo,
  emptyText: "这个科目还没有老师。 No teachers in this subject yet.",
});

function showSubject(record) {
  if (record.name !== undefined) document.getElementById("subject-name").textContent = record.name;
  status.voting.show(record);
}

function onMessage(message) {
  if (message.channel !== channel) return;
  if (message.watching !== undefined) {
    const line = document.getElementById("watching");
    line.textContent = `${message.watching} 人在看 · ${message.watching} watching`;
    line.hidden = false;
  }
  followSubject(message, subjectNo, {
    show: showSubject,
    removed: () => bars.clear("这个科目已被删除。 This subject was removed."),
  });
  bars.handle(message);
}

document.getElementById("subject-name").after(status.node);
status.voting.show({ state: main.dataset.state, opens_at: main.dataset.opensAt || null, closes_at: main.dataset.closesAt || null });
watchLive([channel], onMessage);
