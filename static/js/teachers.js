// The teachers of one subject: vote 好评 / 差评, switch or withdraw, watch the counts move live,
// and the subject's good and bad counts over the last hour (its history, then live).
import {
  HttpError,
  LiveClient,
  TEACHERS_DID_NOT_LOAD,
  VersionedCounts,
  api,
  el,
  goLogin,
  isWatchingOnly,
  loginOrWatch,
  notify,
  showAccount,
  showState,
} from "./livevote.js";
import { MinuteSeries, drawLines, loadHistory } from "./history.js";
import { VOTING_CLOSED, serverClock, votingStatusLine } from "./voting-window.js";
import { countText, ratioBar } from "./widgets.js";

const counts = new VersionedCounts();
/** teacher no -> "good" | "bad" | null: this user's own vote. */
const mine = new Map();
/** teacher no -> the card's live parts. */
const cards = new Map();

const LABELS = { good: "好评 Good", bad: "差评 Bad" };
/** the subject's counts over the last hour, minute by minute */
const series = new MinuteSeries();

function photoUrl(photo) {
  return photo ? `/static/images/${encodeURIComponent(photo)}` : "/static/images/placeholder.svg";
}

function voteButton(no, value) {
  const count = el("span", { class: "count" }, "0");
  const button = el(
    "button",
    {
      type: "button",
      class: `vote vote-${value}`,
      "aria-pressed": "false",
      dataset: { value },
      onclick: () => vote(no, value),
    },
    el("span", { class: "label" }, LABELS[value]),
    count,
  );
  return { button, count };
}

function teacherCard(teacher) {
  const photo = el("img", { class: "photo", src: photoUrl(teacher.photo), alt: "", loading: "lazy", width: 84, height: 84 });
  photo.addEventListener("error", () => {
    if (!photo.src.endsWith("/placeholder.svg")) photo.src = "/static/images/placeholder.svg";
  }, { once: true });
  const good = voteButton(teacher.no, "good");
  const bad = voteButton(teacher.no, "bad");
  const ratio = ratioBar("ratio");
  const mineLine = el("p", { class: "mine" });
  const card = el(
    "article",
    { class: "card teacher", dataset: { no: teacher.no } },
    el(
      "div",
      { class: "teacher-top" },
      photo,
      el(
        "div",
        {},
        el("h2", { class: "name", translate: "no" }, teacher.name),
        el(
          "div",
          { class: "facts" },
          el("span", { class: teacher.sex ? "sex sex-m" : "sex sex-f" }, teacher.sex ? "♂ 男 Male" : "♀ 女 Female"),
          el("span", { class: "birth" }, `生日 Born ${teacher.birth}`),
        ),
      ),
    ),
    el("p", { class: "intro", translate: "no" }, teacher.intro || ""),
    ratio.node,
    el("div", { class: "votes" }, good.button, bad.button),
    mineLine,
  );
  cards.set(teacher.no, { no: teacher.no, version: teacher.version, card, good, bad, ratio, mineLine });
  return card;
}

function setCount(node, value) {
  const text = countText(value);
  if (node.textContent === text) return;
  node.textContent = text;
  node.classList.remove("bump");
  void node.offsetWidth; // restart the animation
  node.classList.add("bump");
}

function render(no) {
  const parts = cards.get(no);
  const state = counts.get(no);
  if (!parts || !state) return;
  setCount(parts.good.count, state.good_count);
  setCount(parts.bad.count, state.bad_count);
  parts.card.dataset.version = String(state.version);
  parts.ratio.show(state.good_count, state.bad_count);
  const value = mine.get(no) ?? null;
  parts.good.button.setAttribute("aria-pressed", String(value === "good"));
  parts.bad.button.setAttribute("aria-pressed", String(value === "bad"));
  showOpenness(parts);
  parts.mineLine.textContent = isWatchingOnly()
    ? "登录后即可投票。 Log in to vote."
    : value ? `你的评价 Your vote：${LABELS[value]}（再点一次撤回 click again to withdraw）` : "你还没有评价这位老师。 Not rated by you yet.";
}

function applyCounts(update) {
  const before = counts.get(update.no)?.version;
  if (counts.apply(update)) {
    render(update.no);
    recordTotals(before === undefined ? 0 : update.version - before); // each vote bumps the version by one
  }
}

/** A vote reply ({teacher, value, good_count, bad_count, version}) from REST. */
function applyVote(result) {
  mine.set(result.teacher, result.value);
  applyCounts({ no: result.teacher, ...result });
  render(result.teacher);
}

// -- the last hour -----------------------------------------------------------------

/** The subject's counts now, as the page shows them, in this minute of the chart. */
function recordTotals(votes) {
  let good = 0;
  let bad = 0;
  for (const no of cards.keys()) {
    const state = counts.get(no);
    if (state) {
      good += state.good_count;
      bad += state.bad_count;
    }
  }
  series.record(good, bad, votes);
  drawHistory();
}

function drawHistory() {
  const canvas = document.getElementById("history-chart");
  const points = series.window();
  const last = points[points.length - 1];
  Object.assign(canvas.dataset, {
    good: String(last.good), bad: String(last.bad), votes: String(points.reduce((sum, point) => sum + point.votes, 0)),
  });
  const style = getComputedStyle(document.documentElement);
  drawLines(canvas, [
    { values: points.map((point) => point.good), colour: style.getPropertyValue("--good").trim() || "green" },
    { values: points.map((point) => point.bad), colour: style.getPropertyValue("--bad").trim() || "red" },
  ]);
}

let reading = null;

/** The subject's history of the last hour, in place of what the chart had. */
function readHistory(sno) {
  reading ??= (async () => {
    try {
      await series.reload(() => loadHistory([`/api/subjects/${encodeURIComponent(sno)}/history`]));
      drawHistory();
    } catch {
      // the chart goes on from the socket; the next snapshot reads the history again
    } finally {
      reading = null;
    }
  })();
}

function setBusy(no, busy) {
  const parts = cards.get(no);
  if (!parts) return;
  parts.busy = busy;
  showOpenness(parts);
}

const OFFLINE_NOTICE = "投票没有成功：连接已断开，恢复后请再投一次。 Vote not saved: the connection is down; vote again once it is back.";

/** Why a vote failed, in the page's languages: never the error's own (English) text. */
function voteFailure(error) {
  if (!(error instanceof HttpError)) return OFFLINE_NOTICE; // fetch found no server
  if (error.status === 409 && error.problem.code === "voting_closed") return VOTING_CLOSED;
  if (error.status === 404) return "投票没有成功：没有这位老师。 Vote not saved: no such teacher.";
  if (error.status === 429) return "投票太频繁，请稍等再试。 Too many votes; wait a moment and try again.";
  if (error.status === 503) return "服务暂时不可用，请稍后再投。 The service is unavailable; vote again shortly.";
  return `投票没有成功（HTTP ${error.status}），请稍后再试。 Vote not saved (HTTP ${error.status}); try again later.`;
}

/** The connection is back: the "connection is down" notice goes by itself (any other stays). */
function clearOfflineNotice() {
  if (document.getElementById("notice")?.textContent === OFFLINE_NOTICE) notify("");
}

/**
 * A vote clicked while only watching: log in, and come back here with the vote in the address
 * (?teacher=N&vote=good), where castIntendedVote casts it.
 */
function logInToVote(no, value) {
  const back = new URLSearchParams(window.location.search);
  back.set("teacher", no);
  back.set("vote", value);
  goLogin(undefined, `${window.location.pathname}?${back}`);
}

/** The vote that sent the user to log in, cast once: it leaves the address, so a reload does not withdraw it. */
async function castIntendedVote() {
  const params = new URLSearchParams(window.location.search);
  if (!params.has("vote")) return;
  const no = Number(params.get("teacher"));
  const value = params.get("vote");
  params.delete("teacher");
  params.delete("vote");
  window.history.replaceState(null, "", `${window.location.pathname}?${params}`);
  if (cards.has(no) && (value === "good" || value === "bad") && mine.get(no) !== value) await vote(no, value);
}

async function vote(no, value) {
  if (isWatchingOnly()) {
    logInToVote(no, value);
    return;
  }
  const next = (mine.get(no) ?? null) === value ? null : value;
  setBusy(no, true);
  try {
    const path = `/api/teachers/${encodeURIComponent(no)}/vote`;
    const result = next === null
      ? await api(path, { method: "DELETE", auth: true })
      : await api(path, { method: "PUT", body: { value: next }, auth: true });
    applyVote(result);
    notify("");
  } catch (error) {
    notify(voteFailure(error));
  } finally {
    setBusy(no, false);
  }
}

function showWatching(count) {
  const line = document.getElementById("watching");
  line.textContent = `${count} 人在看 · ${count} watching`;
  line.hidden = false;
}

function showSubjectName(name) {
  const heading = document.getElementById("subject-name");
  heading.textContent = name;
  heading.translate = false; // a name, not the page's words
  document.title = `livevote · ${name} · 老师 Teachers`;
}

/** Show a teacher's record: a new card, or the card redrawn when the record is newer. */
function showTeacher(record) {
  const old = cards.get(record.no);
  if (old && old.version >= record.version) return;
  const card = teacherCard(record);
  if (old) old.card.replaceWith(card);
  else {
    document.querySelector("#teachers .empty, #teachers .loading")?.remove();
    const list = document.getElementById("teachers");
    const after = [...cards.values()].find((parts) => parts.no > record.no && parts.card.isConnected);
    list.insertBefore(card, after ? after.card : null);
  }
  counts.apply(record);
  render(record.no);
}

function dropTeacher(no) {
  cards.get(no)?.card.remove();
  if (cards.delete(no)) recordTotals(0);
  showIfEmpty();
}

const NO_TEACHERS = "这个科目还没有老师。 No teachers in this subject yet.";

function showIfEmpty() {
  const list = document.getElementById("teachers");
  if (cards.size || list.querySelector(".empty")) return;
  list.querySelector(".loading")?.remove();
  list.append(el("div", { class: "card empty" }, NO_TEACHERS));
}

/** A teacher or this subject was added, changed or removed elsewhere: show it without a reload. */
function applyCatalog(message, subjectNo) {
  if (message.kind === "subject") {
    if (message.record && message.record.no === subjectNo) {
      showSubjectName(message.record.name);
      votingStatus.voting.show(message.record);
    }
    if (message.removed === subjectNo) {
      for (const no of [...cards.keys()]) dropTeacher(no);
      notify("这个科目已被删除。 This subject was removed.");
    }
    return;
  }
  if (message.record && message.record.subject === subjectNo) showTeacher(message.record);
  else dropTeacher(message.record ? message.record.no : message.removed);
}

/** A snapshot is the whole channel: its subject, and exactly the teachers it lists. */
let snapshotShown = false;

function applySnapshot(message) {
  snapshotShown = true;
  document.getElementById("teachers").removeAttribute("aria-busy");
  if (message.now) serverClock.sync(message.now);
  if (message.subject) {
    showSubjectName(message.subject.name);
    votingStatus.voting.show(message.subject);
  }
  const listed = new Set();
  for (const teacher of message.teachers || []) {
    listed.add(teacher.no);
    if (teacher.name !== undefined) showTeacher(teacher);
    applyCounts(teacher);
  }
  for (const no of [...cards.keys()]) if (!listed.has(no)) dropTeacher(no);
  showIfEmpty();
}

function onMessage(message, channel) {
  if (message.channel !== channel) return;
  if (message.type === "catalog") applyCatalog(message, Number(channel.slice("subject:".length)));
  if (message.watching !== undefined) showWatching(message.watching);
  if (message.type === "snapshot") {
    applySnapshot(message);
    readHistory(channel.slice("subject:".length)); // the socket was away (or just came): what it missed is in the store
  }
  else if (message.type === "votes") for (const update of message.updates || []) applyCounts(update);
}

// -- the voting window -------------------------------------------------------------------------

/** The subject's voting state and countdown; the vote buttons follow it. */
const votingStatus = votingStatusLine(showVotingState);

function votingClosed() {
  return votingStatus.voting.state === "closed";
}

/** A card's buttons: disabled while a vote is under way or voting is closed. */
function showOpenness(parts) {
  const disabled = Boolean(parts.busy) || votingClosed();
  parts.good.button.disabled = disabled;
  parts.bad.button.disabled = disabled;
}

function showVotingState(state) {
  document.getElementById("teachers").dataset.voting = state;
  for (const parts of cards.values()) showOpenness(parts);
  if (state === "open" && document.getElementById("notice")?.textContent === VOTING_CLOSED) notify("");
}

async function loadMyVotes(teachers) {
  await Promise.all(teachers.map(async (teacher) => {
    try {
      applyVote(await api(`/api/teachers/${encodeURIComponent(teacher.no)}/vote`, { auth: true }));
    } catch (error) {
      if (!(error instanceof HttpError && error.status === 404)) throw error;
    }
  }));
}

async function main() {
  const list = document.getElementById("teachers");
  const sno = new URLSearchParams(window.location.search).get("sno") || "";
  if (!/^\d{1,18}$/.test(sno)) {
    list.removeAttribute("aria-busy");
    notify("没有这个科目，请从科目列表选择。 No such subject; pick one from the list.");
    return;
  }
  document.getElementById("subject-hint").after(votingStatus.node);
  const who = await loginOrWatch();
  showAccount(who);
  const channel = `subject:${sno}`;
  showState("connecting");
  const onState = (state, transport) => {
    showState(state, transport);
    if (state === "live") clearOfflineNotice();
  };
  const live = new LiveClient({ channels: [channel], onState, onMessage: (m) => onMessage(m, channel) }).start();
  readHistory(sno);
  setInterval(drawHistory, 10_000); // the window moves on while nobody votes
  window.addEventListener("resize", drawHistory);
  window.addEventListener("online", () => {
    if (live.state === "live") clearOfflineNotice(); // the socket stayed up while the network was away
  });
  try {
    const data = await api(`/api/teachers/?sno=${encodeURIComponent(sno)}`);
    if (!snapshotShown) { // else the live snapshot, as new or newer, is already on the page
      showSubjectName(data.subject.name);
      votingStatus.voting.show(data.subject);
      for (const teacher of data.teachers) showTeacher(teacher);
      showIfEmpty();
    }
    if (who) {
      await loadMyVotes(data.teachers);
      await castIntendedVote();
    }
  } catch (error) {
    notify(error instanceof HttpError && error.status === 404
      ? "没有这个科目。 No such subject."
      : TEACHERS_DID_NOT_LOAD);
  } finally {
    list.removeAttribute("aria-busy");
  }
}

main();
