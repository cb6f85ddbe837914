// Parts several pages show alike: the good/bad ratio bar (teachers, dashboard) and the link to a
// subject's voting page (subjects, dashboard, admin).
import { el } from "./livevote.js";

/** The address of subject `no`'s voting page. */
export function votingPageUrl(no) {
  return `/teachers.html?sno=${encodeURIComponent(no)}`;
}

/**
 * A bar split between good and bad votes: place `node` (its class is `className`), call
 * `show(good, bad)` on every change. Without votes the bar is empty.
 */
export function ratioBar(className) {
  const good = el("span", { class: "ratio-good" });
  const bad = el("span", { class: "ratio-bad" });
  return {
    node: el("div", { class: className, "aria-hidden": "true" }, good, bad),
    show(goodCount, badCount) {
      const total = goodCount + badCount;
      good.style.flexGrow = String(total ? goodCount : 1);
      bad.style.flexGrow = String(total ? badCount : 1);
      good.hidden = bad.hidden = total === 0;
    },
  };
}
