// The realtime dashboard: totals per subject (channel `dashboard`), a chart of
// vote changes per second over the last 3 minutes, and open sockets (/api/stats).
//
// "Votes per second" counts changes of the per-subject counts: a cast or a
// withdrawal is 1, a switch good <-> bad is 2 (one count down, one up).
import { LiveClient, SUBJECTS_DID_NOT_LOAD, api, el, loginOrWatch, notify, showAccount, showState } from "./livevote.js";
import { serverClock, stateBadge } from "./voting-window.js";
import { countText, isWithheld, ratioBar, votingPageUrl } from "./widgets.js";

const WINDOW_SECONDS = 180;
const RATE_SECONDS = 10;
const STATS_EVERY_MS = 3000;
const TICKS = 4;

/** subject no -> {no, name, good_count, bad_count} */
const subjects = new Map();
/** epoch second -> vote changes seen in that second */
const perSecond = new Map();
const rows = new Map();
/** subject no -> people watching it, on every server process */
let watching = {};

const numberFormat = new Intl.NumberFormat("zh-CN");

function nowSecond() {
  return Math.floor(Date.now() / 1000);
}

function record(changes) {
  if (changes <= 0) return;
  const second = nowSecond();
  perSecond.set(second, (perSecond.get(second) || 0) + changes);
}

function row(subject) {
  let parts = rows.get(subject.no);
  if (parts) return parts;
  const good = el("td", { class: "num good" });
  const bad = el("td", { class: "num bad" });
  const viewers = el("td", { class: "num watching" });
  const ratio = ratioBar("bar");
  const name = el("a", { class: "subject-name", href: votingPageUrl(subject.no), translate: "no" });
  const badge = stateBadge();
  const tr = el(
    "tr",
    { dataset: { no: subject.no } },
    el("td", {}, name, " ", badge.node),
    el("td", { class: "bar-cell" }, ratio.node),
    good,
    bad,
    viewers,
  );
  parts = { tr, name, good, bad, viewers, ratio, badge };
  rows.set(subject.no, parts);
  const body = document.getElementById("totals");
  const after = [...rows.keys()].filter((no) => no > subject.no).sort((a, b) => a - b)[0];
  body.insertBefore(tr, after === undefined ? null : rows.get(after).tr);
  return parts;
}

function renderSubject(subject) {
  const parts = row(subject);
  parts.name.textContent = subject.name;
  parts.good.textContent = countText(subject.good_count, (value) => numberFormat.format(value));
  parts.bad.textContent = countText(subject.bad_count, (value) => numberFormat.format(value));
  parts.viewers.textContent = numberFormat.format(watching[subject.no] || 0);
  parts.ratio.show(subject.good_count, subject.bad_count);
}

function renderTotal() {
  let total = 0;
  for (const subject of subjects.values()) total += (subject.good_count ?? 0) + (subject.bad_count ?? 0);
  document.getElementById("votes-total").textContent = numberFormat.format(total);
}

/** Apply totals; `counting` adds their differences to the chart (not for snapshots, which resync). */
function applySubjects(list, counting) {
  let changes = 0;
  for (const subject of list) {
    const known = subjects.get(subject.no);
    if (known && counting && ![known, subject].some((s) => isWithheld(s.good_count) || isWithheld(s.bad_count))) {
      changes += Math.abs(subject.good_count - known.good_count) + Math.abs(subject.bad_count - known.bad_count);
    }
    subjects.set(subject.no, { ...subject });
    renderSubject(subject);
  }
  record(changes);
  renderTotal();
  draw();
}

function showWatching(bySubject) {
  watching = bySubject;
  for (const subject of subjects.values()) renderSubject(subject);
}

/** A subject was added, renamed or removed elsewhere. */
function applyCatalog(message) {
  if (message.kind !== "subject") return;
  if (message.record) {
    const known = subjects.get(message.record.no) || { good_count: 0, bad_count: 0 };
    applySubjects([{ ...known, no: message.record.no, name: message.record.name }], false);
    return;
  }
  dropSubject(message.removed);
  renderTotal();
}

function dropSubject(no) {
  subjects.delete(no);
  rows.get(no)?.badge.voting.stop();
  rows.get(no)?.tr.remove();
  rows.delete(no);
}

/** A snapshot is the whole dashboard: exactly the subjects it lists. */
function applySnapshot(list) {
  const listed = new Set(list.map((subject) => subject.no));
  for (const no of [...subjects.keys()]) if (!listed.has(no)) dropSubject(no);
  applySubjects(list, false);
}

function onMessage(message) {
  if (message.channel !== "dashboard") return;
  if (message.type === "catalog") applyCatalog(message);
  if (message.watching !== undefined) showWatching(message.watching);
  if (message.type === "snapshot") applySnapshot(message.subjects || []);
  else if (message.type === "votes") applySubjects(message.subjects || [], true);
  showWindows(message);
}

// -- voting state --------------------------------------------------------------------------------

/** Each subject's badge follows its voting window, from snapshots and catalog changes. */
function showWindows(message) {
  if (message.now) serverClock.sync(message.now);
  const records = message.type === "snapshot" ? message.subjects || [] : message.type === "catalog" && message.kind === "subject" ? [message.record] : [];
  for (const record of records) if (record) rows.get(record.no)?.badge.voting.show(record);
}

// -- chart ---------------------------------------------------------------------

/** A round step for TICKS grid lines that covers `value`: 1, 2, 5, 10, 20, 50… */
function niceStep(value) {
  const rough = Math.max(1, value / TICKS);
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  for (const step of [1, 2, 5, 10]) if (rough <= step * magnitude) return step * magnitude;
  return 10 * magnitude;
}

function draw() {
  const canvas = document.getElementById("chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (!width || !height) return;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);

  const end = nowSecond();
  const values = [];
  for (let second = end - WINDOW_SECONDS + 1; second <= end; second++) values.push(perSecond.get(second) || 0);
  for (const second of perSecond.keys()) if (second <= end - WINDOW_SECONDS) perSecond.delete(second);

  const left = 34;
  const top = 8;
  const bottom = 6;
  const plotWidth = width - left - 4;
  const plotHeight = height - top - bottom;
  const step = niceStep(Math.max(...values));
  const ceiling = step * TICKS;

  ctx.font = "12px system-ui, sans-serif";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= TICKS; i++) {
    const y = top + plotHeight - (plotHeight * i) / TICKS;
    ctx.strokeStyle = i === 0 ? "#c9d0de" : "#edf0f5";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(left, Math.round(y) + 0.5);
    ctx.lineTo(width - 4, Math.round(y) + 0.5);
    ctx.stroke();
    ctx.fillStyle = "#8a94a6";
    ctx.fillText(String(step * i), left - 6, y);
  }

  const slot = plotWidth / WINDOW_SECONDS;
  const gradient = ctx.createLinearGradient(0, top, 0, top + plotHeight);
  gradient.addColorStop(0, "#4c6ef5");
  gradient.addColorStop(1, "#91a7ff");
  ctx.fillStyle = gradient;
  values.forEach((value, index) => {
    if (!value) return;
    const barHeight = Math.max(2, (plotHeight * value) / ceiling);
    const x = left + index * slot;
    ctx.fillRect(x + slot * 0.12, top + plotHeight - barHeight, Math.max(1, slot * 0.76), barHeight);
  });

  const recent = values.slice(-RATE_SECONDS).reduce((sum, value) => sum + value, 0) / RATE_SECONDS;
  document.getElementById("votes-rate").textContent = recent.toFixed(1);
}

// -- open sockets ------------------------------------------------------------------

async function pollStats() {
  const target = document.getElementById("sockets");
  try {
    const stats = await api("/api/stats");
    target.textContent = typeof stats.sockets === "number" ? numberFormat.format(stats.sockets) : "—";
    if (!subjects.size && Array.isArray(stats.subjects)) applySubjects(stats.subjects, false);
  } catch {
    target.textContent = "—";
  }
}

async function main() {
  const who = await loginOrWatch(); // a projector shows the dashboard all day with nobody logged in
  showAccount(who);
  showState("connecting");
  const onState = (state) => {
    showState(state);
    if (state === "live") pollStats(); // our own socket counts now
  };
  new LiveClient({ channels: ["dashboard"], onState, onMessage }).start();
  pollStats();
  setInterval(pollStats, STATS_EVERY_MS);
  setInterval(draw, 1000);
  window.addEventListener("resize", draw);
  try {
    if (!subjects.size) {
      const list = await api("/api/subjects/");
      for (const subject of list) {
        if (!subjects.has(subject.no)) {
          applySubjects([{ no: subject.no, name: subject.name, good_count: 0, bad_count: 0 }], false);
          showWindows({ type: "catalog", record: subject });
        }
      }
    }
  } catch {
    notify(SUBJECTS_DID_NOT_LOAD);
  }
}

main();
