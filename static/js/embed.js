// The embed pages, made for an <iframe> on another site: /embed/subject/N (every teacher of
// subject N) and /embed/teacher/N (teacher N alone) as live bars of good and bad votes, with the
// subject's name and voting state. Read-only, on a viewer token (live-bars.js).
//
// The bars follow their own channel (subject:N or teacher:N); the subject's record always comes
// from subject:N, which a teacher's page watches too. A teacher that moves to another subject
// reloads its page, to show that subject instead.
import { LiveBars, followSubject, watchLive } from "./live-bars.js";
import { votingStatus } from "./voting-window.js";

const main = document.getElementById("embed");
const subjectNo = Number(main.dataset.subject);
const teacherNo = main.dataset.teacher ? Number(main.dataset.teacher) : null;
const subjectChannel = `subject:${subjectNo}`;
const barsChannel = teacherNo === null ? subjectChannel : `teacher:${teacherNo}`;
const status = votingStatus({ tag: "div", ids: true });
const bars = new LiveBars({
  list: document.getElementById("bars"),
  channel: barsChannel,
  keeps: teacherNo === null ? (teacher) => teacher.subject === subjectNo : (teacher) => teacher.no === teacherNo,
  emptyText: teacherNo === null
    ? "这个科目还没有老师。 No teachers in this subject yet."
    : "这位老师已被删除。 This teacher was removed.",
});

function showSubject(record) {
  if (record.name !== undefined) document.getElementById("subject-name").textContent = record.name;
  status.voting.show(record);
}

function onMessage(message) {
  if (message.channel === subjectChannel) {
    followSubject(message, subjectNo, {
      show: showSubject,
      removed: () => bars.clear("这个科目已被删除。 This subject was removed."),
    });
  }
  const moved = message.channel === barsChannel && message.kind === "teacher" && message.record?.no === teacherNo
    && message.record.subject !== subjectNo;
  if (moved) window.location.reload();
  else bars.handle(message);
}

document.getElementById("embed-status").prepend(status.node);
status.voting.show({ state: main.dataset.state, opens_at: main.dataset.opensAt || null, closes_at: main.dataset.closesAt || null });
watchLive(teacherNo === null ? [subjectChannel] : [barsChannel, subjectChannel], onMessage);
