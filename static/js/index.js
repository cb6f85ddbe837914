// The subjects page: public. Each card shows its subject's live vote totals and how many
// people watch it, from the dashboard channel (on a viewer token when nobody is logged in).
import { LiveClient, SUBJECTS_DID_NOT_LOAD, api, el, loginOrWatch, notify, showAccount, showState } from "./livevote.js";
import { countText, votingPageUrl } from "./widgets.js";

/** subject no -> {card, line: the card's live line, record} */
const cards = new Map();

function subjectCard(subject) {
  const line = el("p", { class: "totals" });
  const card = el(
    "a",
    { class: "card subject", href: votingPageUrl(subject.no), dataset: { no: subject.no } },
    subject.is_hot ? el("span", { class: "hot" }, "热门 Hot") : null,
    el("h2", { translate: "no" }, subject.name),
    el("p", { translate: "no" }, subject.intro || ""),
    line,
    el("span", { class: "more" }, "查看老师 Teachers →"),
  );
  return { card, line, record: { no: subject.no, name: subject.name, intro: subject.intro, is_hot: subject.is_hot } };
}

/** Show a subject's record: a new card in number order, or the card redrawn when it changed. */
function showSubject(subject) {
  const old = cards.get(subject.no);
  if (old && ["name", "intro", "is_hot"].every((key) => old.record[key] === subject[key])) return;
  const parts = subjectCard(subject);
  cards.set(subject.no, parts);
  const list = document.getElementById("subjects");
  if (old) old.card.replaceWith(parts.card);
  else {
    list.querySelector(".empty, .loading")?.remove();
    const after = [...cards.values()].find((other) => other.record.no > subject.no && other.card.isConnected);
    list.insertBefore(parts.card, after ? after.card : null);
  }
  show(subject.no, {});
}

function dropSubject(no) {
  cards.get(no)?.card.remove();
  cards.delete(no);
  shown.delete(no);
  showIfEmpty();
}

function showIfEmpty() {
  const list = document.getElementById("subjects");
  if (cards.size || list.querySelector(".empty")) return;
  list.querySelector(".loading")?.remove();
  list.append(el("div", { class: "card empty" }, "还没有科目。 No subjects yet."));
}

/** The latest totals and watchers per subject, whichever of the two arrives first. */
const shown = new Map();

function show(no, change) {
  const state = { good_count: 0, bad_count: 0, watching: 0, ...shown.get(no), ...change };
  shown.set(no, state);
  const line = cards.get(no)?.line;
  if (line) line.textContent = `好评 Good ${countText(state.good_count)} · 差评 Bad ${countText(state.bad_count)} · ${state.watching} 人在看 watching`;
}

function onMessage(message) {
  if (message.channel !== "dashboard") return;
  if (message.type === "snapshot") { // the whole catalog: exactly the subjects it lists
    const listed = new Set(message.subjects.map((subject) => subject.no));
    for (const no of [...cards.keys()]) if (!listed.has(no)) dropSubject(no);
    for (const subject of message.subjects) if (subject.intro !== undefined) showSubject(subject);
    showIfEmpty();
  }
  if (message.type === "catalog" && message.kind === "subject") {
    if (message.record) showSubject(message.record);
    else dropSubject(message.removed);
  }
  for (const subject of message.subjects || []) {
    show(subject.no, { good_count: subject.good_count, bad_count: subject.bad_count });
  }
  if (message.watching) {
    for (const no of new Set([...shown.keys(), ...cards.keys()])) show(no, { watching: message.watching[no] || 0 });
  }
}

async function main() {
  const list = document.getElementById("subjects");
  try {
    for (const subject of await api("/api/subjects/")) showSubject(subject);
    showIfEmpty();
  } catch {
    notify(SUBJECTS_DID_NOT_LOAD);
  } finally {
    list.removeAttribute("aria-busy");
  }
  showAccount(await loginOrWatch());
  new LiveClient({ channels: ["dashboard"], onState: showState, onMessage }).start();
}

main();
