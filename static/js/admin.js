// The catalog's admin page: list, create, edit and delete subjects and their teachers, through
// the REST API with the admin's bearer token. Only an administrator gets the controls (cloned
// from a <template>); anyone else logged in is told so, and a visitor goes to log in. The API
// refuses everyone but admins anyway (401 / 403).
//
// How a form writes, and says what went wrong, is admin-forms.js; the audit log below the lists is
// admin-audit.js; the embed snippets are admin-embed.js. Every write is followed by a fresh read
// of the lists and of the log's newest page.
import { loadAudit, wireAudit } from "./admin-audit.js";
import { showEmbed, wireEmbed } from "./admin-embed.js";
import { DENIED, clearFieldErrors, confirmDelete, warn, write, writeFailure } from "./admin-forms.js";
import {
  HttpError,
  SUBJECTS_DID_NOT_LOAD,
  TEACHERS_DID_NOT_LOAD,
  api,
  el,
  goLogin,
  notify,
  showAccount,
  tryLogin,
} from "./livevote.js";
import { localInputValue, utcFromLocalInput, votingStatus } from "./voting-window.js";
import { votingPageUrl } from "./widgets.js";

/** The subjects as last listed, in order. */
let subjects = [];
/** The teachers of the chosen subject, as last listed. */
let teachers = [];
/** The subject whose teachers are listed, or null. */
let chosen = null;
/** The record each form edits (null: the form creates). */
let editingSubject = null;
let editingTeacher = null;
/** Newer list reads win over older ones that answer late. */
let teacherReads = 0;

const $ = (id) => document.getElementById(id);

function listFailure(error, what) {
  if (error instanceof HttpError && error.status === 404 && what === "teachers") {
    return "这个科目已经不存在了。 This subject no longer exists.";
  }
  return what === "subjects" ? SUBJECTS_DID_NOT_LOAD : TEACHERS_DID_NOT_LOAD;
}

// -- subjects ----------------------------------------------------------------------------------

function actionButton(kind, label, onclick, extra = {}) {
  return el("button", { type: "button", class: `btn btn-quiet btn-small ${kind}`, onclick, ...extra }, label);
}

function subjectRow(subject) {
  const isChosen = subject.no === chosen;
  return el(
    "tr",
    { dataset: { no: subject.no }, class: isChosen ? "chosen" : null },
    el("td", { class: "num" }, String(subject.no)),
    el(
      "td",
      { class: "name-cell" },
      el("span", { class: "row-name", translate: "no" }, subject.name),
      subject.is_hot ? el("span", { class: "hot" }, "热门 Hot") : null,
    ),
    el("td", { class: "intro-col" }, el("div", { class: "intro-cell", translate: "no" }, subject.intro || "")),
    windowCell(subject),
    el(
      "td",
      {},
      el(
        "div",
        { class: "actions" },
        actionButton("show-teachers", "老师 Teachers", () => choose(subject.no), { "aria-pressed": String(isChosen) }),
        actionButton("edit", "编辑 Edit", () => editSubject(subject)),
        actionButton("delete", "删除 Delete", () => deleteSubject(subject)),
      ),
    ),
  );
}

// -- voting windows ------------------------------------------------------------------------------

/** subject no -> its row's VotingWindow (stopped when the rows are drawn again). */
const rowWindows = new Map();

/** A subject's voting state, countdown and schedule (local time), with 现在开放 Open now or 现在关闭 Close now. */
function windowCell(subject) {
  const openNow = actionButton("open-now", "现在开放 Open now", () => setVotingState(subject, "open"));
  const closeNow = actionButton("close-now", "现在关闭 Close now", () => setVotingState(subject, "closed"));
  const status = votingStatus({ tag: "div", onChange(state) {
    openNow.hidden = state === "open";
    closeNow.hidden = state !== "open";
  } });
  rowWindows.set(subject.no, status.voting);
  status.voting.show(subject);
  const times = [["开始 Opens", subject.opens_at], ["截止 Closes", subject.closes_at]]
    .filter(([, at]) => at)
    .map(([label, at]) => el("div", { class: "window-time" }, `${label} ${localInputValue(at).replace("T", " ")}`));
  return el("td", { class: "window-cell" }, status.node, ...times, el("div", { class: "actions" }, openNow, closeNow));
}

/** PATCH {"state": ...}: open or close voting now, on the server's clock. */
async function setVotingState(subject, state) {
  notify("");
  try {
    await api(`/api/subjects/${encodeURIComponent(subject.no)}/`, { method: "PATCH", body: { state }, auth: true });
    notify(state === "open"
      ? `「${subject.name}」投票已开放。 Voting is open.`
      : `「${subject.name}」投票已关闭。 Voting is closed.`, "info");
  } catch (error) {
    warn(writeFailure(error, "window"));
  }
  await loadSubjects();
}

/** The schedule inputs as the form filled them, so that only what the admin changed is sent. */
let scheduleShown = { opens_at: "", closes_at: "" };

/**
 * The schedule inputs' changes as PATCH fields: a moment in UTC, null for a cleared one. Fields
 * left as shown are not sent, so a "close now" meanwhile is not undone by saving a name.
 */
function scheduleChanges() {
  const changes = {};
  for (const [field, input] of [["opens_at", $("subject-opens")], ["closes_at", $("subject-closes")]]) {
    if (input.value !== scheduleShown[field]) changes[field] = utcFromLocalInput(input.value);
  }
  return changes;
}

function showSchedule(subject) {
  scheduleShown = {
    opens_at: subject ? localInputValue(subject.opens_at) : "",
    closes_at: subject ? localInputValue(subject.closes_at) : "",
  };
  $("subject-opens").value = scheduleShown.opens_at;
  $("subject-closes").value = scheduleShown.closes_at;
}

function clearSchedule() {
  $("subject-opens").value = "";
  $("subject-closes").value = "";
}

function renderSubjects() {
  for (const voting of rowWindows.values()) voting.stop(); // the rows are drawn anew, with their own
  rowWindows.clear();
  const rows = $("subject-rows");
  rows.replaceChildren(...subjects.map(subjectRow));
  if (!subjects.length) rows.append(el("tr", { class: "empty-row" }, el("td", { colspan: 5 }, "还没有科目。 No subjects yet.")));
  // The teacher form's subject choices follow the list; a choice that is gone is dropped.
  const select = $("teacher-subject");
  const keep = select.value;
  select.replaceChildren(...subjects.map((subject) => el("option", { value: subject.no, translate: "no" }, `${subject.no} · ${subject.name}`)));
  if (subjects.some((subject) => String(subject.no) === keep)) select.value = keep;
  else if (chosen !== null) select.value = String(chosen);
}

async function loadSubjects() {
  try {
    subjects = await api("/api/subjects/");
  } catch (error) {
    notify(listFailure(error, "subjects"));
    return false;
  }
  if (chosen !== null && !subjects.some((subject) => subject.no === chosen)) setChosen(null);
  renderSubjects();
  showChosen(); // a renamed subject's name over its teachers
  return true;
}

function subjectForm() {
  return { form: $("subject-form"), name: $("subject-name"), intro: $("subject-intro"), hot: $("subject-hot") };
}

function resetSubjectForm() {
  const { form, name, intro, hot } = subjectForm();
  editingSubject = null;
  form.dataset.mode = "create";
  delete form.dataset.no;
  name.value = "";
  intro.value = "";
  hot.checked = false;
  showSchedule(null);
  clearFieldErrors(form);
  $("subject-form-title").textContent = "新建科目 New subject";
  $("subject-submit").textContent = "新建 Create";
  $("subject-cancel").hidden = true;
}

function editSubject(subject) {
  const { form, name, intro, hot } = subjectForm();
  editingSubject = subject.no;
  form.dataset.mode = "edit";
  form.dataset.no = String(subject.no);
  name.value = subject.name;
  intro.value = subject.intro || "";
  hot.checked = Boolean(subject.is_hot);
  showSchedule(subject);
  clearFieldErrors(form);
  $("subject-form-title").textContent = `编辑科目「${subject.name}」 Edit subject`;
  $("subject-submit").textContent = "保存 Save";
  $("subject-cancel").hidden = false;
  name.focus();
}

async function saveSubject(event) {
  event.preventDefault();
  const { form, name, intro, hot } = subjectForm();
  const no = editingSubject;
  // PATCH, not PUT: a PUT replaces every field, and would drop a voting window it does not send.
  const body = { name: name.value.trim(), intro: intro.value, is_hot: hot.checked,
    ...scheduleChanges() };
  const saved = await write(form, "subject", () => no === null
    ? api("/api/subjects/", { method: "POST", body, auth: true })
    : api(`/api/subjects/${encodeURIComponent(no)}/`, { method: "PATCH", body, auth: true }), refresh);
  if (!saved) return;
  resetSubjectForm();
  notify(no === null ? `已新建科目「${saved.name}」。 Subject created.` : `已保存科目「${saved.name}」。 Subject saved.`, "info");
  await loadSubjects();
  if (no === null) await choose(saved.no); // on to its teachers
  else await loadTeachers();
  await loadAudit(1);
}

async function deleteSubject(subject) {
  if (!(await confirmDelete(`删除科目「${subject.name}」（编号 ${subject.no}）？ Delete the subject "${subject.name}" (no. ${subject.no})?`))) return;
  notify("");
  try {
    await api(`/api/subjects/${encodeURIComponent(subject.no)}/`, { method: "DELETE", auth: true });
    notify(`已删除科目「${subject.name}」。 Subject deleted.`, "info");
    if (editingSubject === subject.no) resetSubjectForm();
    if (chosen === subject.no) setChosen(null);
  } catch (error) {
    warn(writeFailure(error, "subject"));
  }
  await refresh();
}

// -- teachers ----------------------------------------------------------------------------------

function teacherRow(teacher) {
  return el(
    "tr",
    { dataset: { no: teacher.no } },
    el("td", { class: "num" }, String(teacher.no)),
    el("td", { class: "name-cell" }, el("span", { class: "row-name", translate: "no" }, teacher.name)),
    el("td", { class: "sex" }, teacher.sex ? "男 Male" : "女 Female"),
    el("td", { class: "birth" }, teacher.birth),
    el(
      "td",
      {},
      el(
        "div",
        { class: "actions" },
        actionButton("edit", "编辑 Edit", () => editTeacher(teacher)),
        actionButton("delete", "删除 Delete", () => deleteTeacher(teacher)),
        actionButton("embed", "嵌入 Embed", () => showEmbed("teacher", teacher)),
      ),
    ),
  );
}

function renderTeachers() {
  const rows = $("teacher-rows");
  if (chosen === null) {
    rows.replaceChildren();
    return;
  }
  rows.replaceChildren(...teachers.map(teacherRow));
  if (!teachers.length) {
    rows.append(el("tr", { class: "empty-row" }, el("td", { colspan: 5 }, "这个科目还没有老师。 No teachers in this subject yet.")));
  }
}

/** The chosen subject, as listed: its name over the teachers, its row marked. */
function showChosen() {
  const no = chosen;
  const subject = subjects.find((item) => item.no === no);
  const view = $("teachers-view");
  $("teachers-hint").hidden = no !== null;
  view.hidden = no === null;
  if (no !== null) {
    const name = subject ? subject.name : `#${no}`;
    view.replaceChildren(
      `「${name}」的老师 · Teachers of "${name}" `,
      el("a", { href: votingPageUrl(no), id: "voting-page" }, "投票页 Voting page →"),
      " · ",
      el("a", { href: `/present/${encodeURIComponent(no)}`, id: "present-page" }, "投影 Projector view →"),
    );
  }
  showEmbed("subject", subject || null);
  for (const row of $("subject-rows").querySelectorAll("tr[data-no]")) {
    const on = row.dataset.no === String(no);
    row.classList.toggle("chosen", on);
    row.querySelector(".show-teachers")?.setAttribute("aria-pressed", String(on));
  }
}

/** Which subject's teachers are listed: the rows, the hint, the address (?sno=) and the form's default. */
function setChosen(no) {
  chosen = no;
  teachers = [];
  const url = new URL(window.location.href);
  if (no === null) url.searchParams.delete("sno");
  else url.searchParams.set("sno", String(no));
  window.history.replaceState(null, "", url.pathname + url.search);
  if (editingTeacher === null && no !== null) $("teacher-subject").value = String(no);
  showChosen();
}

async function loadTeachers() {
  const no = chosen;
  const read = ++teacherReads;
  if (no === null) {
    renderTeachers();
    return;
  }
  const list = $("teacher-rows");
  list.setAttribute("aria-busy", "true");
  try {
    const data = await api(`/api/teachers/?sno=${encodeURIComponent(no)}`);
    if (read !== teacherReads) return;
    teachers = data.teachers;
    renderTeachers();
  } catch (error) {
    if (read !== teacherReads) return;
    notify(listFailure(error, "teachers"));
    if (error instanceof HttpError && error.status === 404) setChosen(null);
    renderTeachers();
  } finally {
    if (read === teacherReads) list.removeAttribute("aria-busy");
  }
}

async function choose(no) {
  setChosen(no);
  renderTeachers();
  await loadTeachers();
}

function teacherForm() {
  return {
    form: $("teacher-form"),
    name: $("teacher-name"),
    sex: $("teacher-sex"),
    birth: $("teacher-birth"),
    photo: $("teacher-photo"),
    intro: $("teacher-intro"),
    subject: $("teacher-subject"),
  };
}

function resetTeacherForm() {
  const { form, name, sex, birth, photo, intro, subject } = teacherForm();
  editingTeacher = null;
  form.dataset.mode = "create";
  delete form.dataset.no;
  name.value = "";
  sex.value = "true";
  birth.value = "";
  photo.value = "";
  intro.value = "";
  if (chosen !== null) subject.value = String(chosen);
  clearFieldErrors(form);
  $("teacher-form-title").textContent = "新建老师 New teacher";
  $("teacher-submit").textContent = "新建 Create";
  $("teacher-cancel").hidden = true;
}

function editTeacher(teacher) {
  const { form, name, sex, birth, photo, intro, subject } = teacherForm();
  editingTeacher = teacher.no;
  form.dataset.mode = "edit";
  form.dataset.no = String(teacher.no);
  name.value = teacher.name;
  sex.value = teacher.sex ? "true" : "false";
  birth.value = teacher.birth;
  photo.value = teacher.photo || "";
  intro.value = teacher.intro || "";
  subject.value = String(teacher.subject);
  clearFieldErrors(form);
  $("teacher-form-title").textContent = `编辑老师「${teacher.name}」 Edit teacher`;
  $("teacher-submit").textContent = "保存 Save";
  $("teacher-cancel").hidden = false;
  name.focus();
}

async function saveTeacher(event) {
  event.preventDefault();
  const { form, name, sex, birth, photo, intro, subject } = teacherForm();
  const body = {
    name: name.value.trim(),
    sex: sex.value === "true",
    birth: birth.value, // "" when empty or not a whole date: the server names the field
    photo: photo.value.trim(),
    intro: intro.value,
  };
  if (subject.value) body.subject = Number(subject.value); // none to choose: "required" on the field
  const no = editingTeacher;
  const saved = await write(form, "teacher", () => no === null
    ? api("/api/teachers/", { method: "POST", body, auth: true })
    : api(`/api/teachers/${encodeURIComponent(no)}/`, { method: "PUT", body, auth: true }), refresh);
  if (!saved) return;
  resetTeacherForm();
  notify(no === null ? `已新建老师「${saved.name}」。 Teacher created.` : `已保存老师「${saved.name}」。 Teacher saved.`, "info");
  await refresh();
}

async function deleteTeacher(teacher) {
  if (!(await confirmDelete(`删除老师「${teacher.name}」（编号 ${teacher.no}）和他收到的评价？ Delete the teacher "${teacher.name}" (no. ${teacher.no}) and their votes?`))) return;
  notify("");
  try {
    await api(`/api/teachers/${encodeURIComponent(teacher.no)}/`, { method: "DELETE", auth: true });
    notify(`已删除老师「${teacher.name}」。 Teacher deleted.`, "info");
    if (editingTeacher === teacher.no) resetTeacherForm();
  } catch (error) {
    warn(writeFailure(error, "teacher"));
  }
  await refresh();
}

/** Read both lists again, and the audit log's newest entries (after every write). */
async function refresh() {
  await loadSubjects();
  await loadTeachers();
  await loadAudit(1);
}

// -- start ---------------------------------------------------------------------------------------

function showDenied(box) {
  box.replaceChildren(el(
    "section",
    { class: "card panel denied", id: "denied" },
    el("p", {}, DENIED),
    el("a", { class: "btn", id: "home", href: "/" }, "返回首页 ", el("span", { lang: "en" }, "Back to home")),
  ));
}

function wire() {
  $("subject-form").addEventListener("submit", saveSubject);
  $("subject-cancel").addEventListener("click", resetSubjectForm);
  $("subject-clear-schedule").addEventListener("click", clearSchedule);
  $("teacher-form").addEventListener("submit", saveTeacher);
  $("teacher-cancel").addEventListener("click", resetTeacherForm);
  $("confirm-yes").addEventListener("click", () => $("confirm").close("delete"));
  $("confirm-no").addEventListener("click", () => $("confirm").close("cancel"));
  wireAudit();
  wireEmbed();
}

async function main() {
  const box = $("admin");
  const who = await tryLogin();
  if (!who) {
    goLogin(); // and back here once logged in
    return;
  }
  showAccount(who);
  if (who.role !== "admin") {
    showDenied(box);
    box.removeAttribute("aria-busy");
    return;
  }
  box.replaceChildren($("admin-template").content.cloneNode(true));
  wire();
  resetSubjectForm();
  resetTeacherForm();
  const loaded = await loadSubjects();
  loadAudit(1); // beside the lists, not before them
  box.removeAttribute("aria-busy");
  if (!loaded) return;
  const wanted = new URLSearchParams(window.location.search).get("sno");
  const start = subjects.find((subject) => String(subject.no) === wanted) || subjects[0];
  if (start) await choose(start.no);
  else setChosen(null);
}

main();
