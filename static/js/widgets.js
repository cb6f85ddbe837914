// Parts several pages show alike: the good/bad ratio bar (teachers, dashboard), the link to a
// subject's voting page (subjects, dashboard, admin), and counts the server may withhold.
import { el } from "./livevote.js";

/** The address of subject `no`'s voting page. */
export function votingPageUrl(no) {
  return `/teachers.html?sno=${encodeURIComponent(no)}`;
}

/**
 * A bar split between good and bad votes: place `node` (its class is `className`), call
 * `show(good, bad)` on every change. Without votes, or with counts withheld, the bar is empty.
 */
export function ratioBar(className) {
  const good = el("span", { class: "ratio-good" });
  const bad = el("span", { class: "ratio-bad" });
  return {
    node: el("div", { class: className, "aria-hidden": "true" }, good, bad),
    show(goodCount, badCount) {
      const withheld = isWithheld(goodCount) || isWithheld(badCount);
      const total = withheld ? 0 : goodCount + badCount;
      good.style.flexGrow = String(total ? goodCount : 1);
      bad.style.flexGrow = String(total ? badCount : 1);
      good.hidden = bad.hidden = total === 0;
    },
  };
}

/** What a count withheld from this user says in its place (the server sends null). */
export const HIDDEN_COUNT = "隐藏 hidden";

/** A count the server may withhold: null (or absent) when this user may not see it yet. */
export function isWithheld(value) {
  return value === null || value === undefined;
}

/** A count as text (`format` for the number), or HIDDEN_COUNT when it is withheld. */
export function countText(value, format = String) {
  return isWithheld(value) ? HIDDEN_COUNT : format(value);
}
