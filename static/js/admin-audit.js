// The admin page's audit log: administrators' changes, newest first, a page at a time, from
// GET /api/audit. Each row says when, who (an administrator, or the command line), what was done to
// which record, and which fields changed from what to what. Everything from the log is shown as
// text (el() makes text nodes), never as markup. admin.js calls loadAudit() after its own writes.
import { api, el } from "./livevote.js";

const PAGE_SIZE = 10;
const VERBS = { create: "新建 Created", update: "修改 Changed", delete: "删除 Deleted", role: "改角色 Role" };
const KINDS = { subject: "科目 Subject", teacher: "老师 Teacher", user: "账号 Account" };
/** Fields that move with votes or with every edit: not what an administrator changed. */
const MOVING = new Set(["good_count", "bad_count", "version"]);

/** The page shown (1: the newest entries). */
let page = 1;
/** Newer reads win over older ones that answer late. */
let reads = 0;

const $ = (id) => document.getElementById(id);

function shown(value) {
  if (value === null || value === undefined) return "—";
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** The record's name as the entry has it (after, else before), or its number. */
function recordLabel(entry) {
  const record = entry.after || entry.before || {};
  const name = record.name ?? record.username;
  return `${KINDS[entry.kind] || entry.kind} #${entry.no}${name === undefined ? "" : ` 「${name}」`}`;
}

/** What changed, one line per field: "name: old → new"; nothing to list for a create or a delete. */
function changeLines(entry) {
  if (!entry.before || !entry.after) return [];
  const fields = new Set([...Object.keys(entry.before), ...Object.keys(entry.after)]);
  return [...fields]
    .filter((field) => !MOVING.has(field) && JSON.stringify(entry.before[field]) !== JSON.stringify(entry.after[field]))
    .map((field) => el("div", { class: "audit-field" }, `${field}: ${shown(entry.before[field])} → ${shown(entry.after[field])}`));
}

function auditRow(entry) {
  const verb = entry.action.split(".")[1];
  const who = entry.via === "cli" ? "命令行 Command line" : entry.username ?? `#${entry.user_id}`;
  return el(
    "tr",
    { dataset: { id: entry.id, action: entry.action } },
    el("td", { class: "audit-at" }, el("time", { datetime: entry.at }, entry.at.replace("T", " ").replace(/\.\d+Z$/, " UTC"))),
    el("td", { class: "audit-who", translate: "no" }, who),
    el("td", { class: "audit-action" }, VERBS[verb] || entry.action),
    el("td", { class: "audit-record", translate: "no" }, recordLabel(entry)),
    el("td", { class: "audit-change", translate: "no" }, changeLines(entry)),
  );
}

/** Read and show the current page of the log (page 1 after a write of one's own). */
export async function loadAudit(wanted = page) {
  const read = ++reads;
  let body;
  try {
    body = await api(`/api/audit?page=${wanted}&page_size=${PAGE_SIZE}`, { auth: true });
  } catch {
    if (read !== reads) return;
    if (wanted > 1) return loadAudit(1); // the page is gone (say the log was trimmed): the newest
    $("audit-rows").replaceChildren(el("tr", { class: "empty-row" }, el("td", { colspan: 5 }, "操作记录没有加载。 The audit log did not load.")));
    return;
  }
  if (read !== reads) return;
  page = wanted;
  const rows = $("audit-rows");
  rows.replaceChildren(...body.results.map(auditRow));
  if (!body.results.length) rows.append(el("tr", { class: "empty-row" }, el("td", { colspan: 5 }, "还没有记录。 No changes yet.")));
  $("audit-newer").disabled = !body.previous;
  $("audit-older").disabled = !body.next;
  const pages = Math.max(1, Math.ceil(body.count / PAGE_SIZE));
  $("audit-where").textContent = `第 ${page} / ${pages} 页，共 ${body.count} 条 · Page ${page} of ${pages}, ${body.count} entries`;
}

export function wireAudit() {
  $("audit-newer").addEventListener("click", () => loadAudit(Math.max(1, page - 1)));
  $("audit-older").addEventListener("click", () => loadAudit(page + 1));
}
