// The subjects page: public. Each card shows its subject's live vote totals and how many
// people watch it, from the dashboard channel (on a viewer token when nobody is logged in).
import { LiveClient, SUBJECTS_DID_NOT_LOAD, api, el, loginOrWatch, notify, showAccount, showState } from "./livevote.js";
import { votingPageUrl } from "./widgets.js";

/** subject no -> the card's live line */
const totals = new Map();

function subjectCard(subject) {
  const line = el("p", { class: "totals" });
  totals.set(subject.no, line);
  return el(
    "a",
    { class: "card subject", href: votingPageUrl(subject.no), dataset: { no: subject.no } },
    subject.is_hot ? el("span", { class: "hot" }, "热门 Hot") : null,
    el("h2", { translate: "no" }, subject.name),
    el("p", { translate: "no" }, subject.intro || ""),
    line,
    el("span", { class: "more" }, "查看老师 Teachers →"),
  );
}

/** The latest totals and watchers per subject, whichever of the two arrives first. */
const shown = new Map();

function show(no, change) {
  const state = { good_count: 0, bad_count: 0, watching: 0, ...shown.get(no), ...change };
  shown.set(no, state);
  const line = totals.get(no);
  if (line) line.textContent = `好评 Good ${state.good_count} · 差评 Bad ${state.bad_count} · ${state.watching} 人在看 watching`;
}

function onMessage(message) {
  if (message.channel !== "dashboard") return;
  for (const subject of message.subjects || []) {
    show(subject.no, { good_count: subject.good_count, bad_count: subject.bad_count });
  }
  if (message.watching) {
    for (const no of new Set([...shown.keys(), ...totals.keys()])) show(no, { watching: message.watching[no] || 0 });
  }
}

async function main() {
  const list = document.getElementById("subjects");
  try {
    const subjects = await api("/api/subjects/");
    list.replaceChildren(...subjects.map(subjectCard));
    if (!subjects.length) list.append(el("div", { class: "card empty" }, "还没有科目。 No subjects yet."));
    for (const [no, state] of shown) show(no, state);
  } catch {
    notify(SUBJECTS_DID_NOT_LOAD);
  } finally {
    list.removeAttribute("aria-busy");
  }
  showAccount(await loginOrWatch());
  new LiveClient({ channels: ["dashboard"], onState: showState, onMessage }).start();
}

main();
