// The realtime dashboard: totals per subject (channel `dashboard`), a chart of
// votes per minute over the last hour, and open sockets (/api/stats).
//
// "Votes" are vote changes, as the stored history counts them: a cast, a withdrawal or a switch
// is one. The chart starts from every subject's history (so a reload keeps it) and goes on from
// the socket's totals, where a change is counted from how the counts moved (a switch moves one
// down and the other up: one change); the next load or snapshot reads the stored history again.
import { LiveClient, SUBJECTS_DID_NOT_LOAD, api, el, loginOrWatch, notify, showAccount, showState } from "./livevote.js";
import { MinuteSeries, chartFrame, loadHistory } from "./history.js";
import { serverClock, stateBadge } from "./voting-window.js";
import { countText, isWithheld, ratioBar, votingPageUrl } from "./widgets.js";

const STATS_EVERY_MS = 3000;

/** subject no -> {no, name, good_count, bad_count} */
const subjects = new Map();
/** the last hour's votes per minute, of all subjects */
const series = new MinuteSeries();
const rows = new Map();
/** subject no -> people watching it, on every server process */
let watching = {};

const numberFormat = new Intl.NumberFormat("zh-CN");

/** The fewest vote changes that move counts by (good, bad): a switch moves both, one each way. */
function changesOf(good, bad) {
  return Math.sign(good) * Math.sign(bad) < 0 ? Math.max(Math.abs(good), Math.abs(bad)) : Math.abs(good) + Math.abs(bad);
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
      changes += changesOf(subject.good_count - known.good_count, subject.bad_count - known.bad_count);
    }
    subjects.set(subject.no, { ...subject });
    renderSubject(subject);
  }
  if (changes > 0) series.record(null, null, changes);
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
  if (message.type === "snapshot") {
    applySnapshot(message.subjects || []);
    readHistory(); // the socket was away (or just came): what it missed is in the store
  }
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

let reading = null;

/** Every subject's history of the last hour, summed, in place of what the chart had. */
function readHistory() {
  reading ??= (async () => {
    try {
      await series.reload(async () => {
        const list = await api("/api/subjects/");
        return loadHistory(list.map((subject) => `/api/subjects/${encodeURIComponent(subject.no)}/history`));
      });
      draw();
    } catch {
      // the chart goes on from the socket; the next snapshot reads the history again
    } finally {
      reading = null;
    }
  })();
}

function draw() {
  const canvas = document.getElementById("chart");
  const values = series.window().map((point) => point.votes);
  canvas.dataset.votes = String(values.reduce((sum, value) => sum + value, 0));
  document.getElementById("votes-rate").textContent = series.rate().toFixed(2);
  const plot = chartFrame(canvas, Math.max(...values));
  if (!plot) return;
  const { ctx } = plot;
  const slot = plot.width / values.length;
  const gradient = ctx.createLinearGradient(0, plot.top, 0, plot.top + plot.height);
  gradient.addColorStop(0, "#4c6ef5");
  gradient.addColorStop(1, "#91a7ff");
  ctx.fillStyle = gradient;
  values.forEach((value, index) => {
    if (!value) return;
    const barHeight = Math.max(2, (plot.height * value) / plot.ceiling);
    const x = plot.left + index * slot;
    ctx.fillRect(x + slot * 0.12, plot.top + plot.height - barHeight, Math.max(1, slot * 0.76), barHeight);
  });
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
  const onState = (state, transport) => {
    showState(state, transport);
    if (state === "live") pollStats(); // our own socket counts now
  };
  new LiveClient({ channels: ["dashboard"], onState, onMessage }).start();
  pollStats();
  readHistory();
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
