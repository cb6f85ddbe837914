// The subjects page: public; shows who is logged in when the session cookie works.
import { api, el, notify, showAccount, tryLogin } from "./livevote.js";

function subjectCard(subject) {
  return el(
    "a",
    { class: "card subject", href: `/teachers.html?sno=${encodeURIComponent(subject.no)}`, dataset: { no: subject.no } },
    subject.is_hot ? el("span", { class: "hot" }, "热门 Hot") : null,
    el("h2", {}, subject.name),
    el("p", {}, subject.intro || ""),
    el("span", { class: "more" }, "查看老师 →"),
  );
}

async function main() {
  const list = document.getElementById("subjects");
  tryLogin().then(showAccount);
  try {
    const subjects = await api("/api/subjects/");
    list.replaceChildren(...subjects.map(subjectCard));
    if (!subjects.length) list.append(el("div", { class: "card empty" }, "还没有科目。"));
  } catch (error) {
    notify(`无法加载科目：${error.message}`);
  } finally {
    list.removeAttribute("aria-busy");
  }
}

main();
