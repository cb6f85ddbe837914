// The admin page's embed box: the <iframe> snippet that puts a subject's live counts (or one
// teacher's) on another site, with a button that copies it. The snippet names this server as the
// administrator reached it; the other site must be listed in server.embed_origins, or browsers
// refuse to show the frame. admin.js shows the chosen subject's snippet, and a teacher's on demand.
import { el } from "./livevote.js";

const HEIGHT = { subject: 320, teacher: 160 };
const LABEL = { subject: "科目 Subject", teacher: "老师 Teacher" };
const COPIED = "已复制 Copied";
const COPY_BY_HAND = "已选中，请按 Ctrl+C 复制 Selected: press Ctrl+C to copy";

const $ = (id) => document.getElementById(id);

/** Text as an HTML attribute's value (between double quotes). */
function attribute(text) {
  return String(text).replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** The <iframe> markup that embeds `record` (a subject's or a teacher's) from this server. */
export function embedSnippet(kind, record) {
  const src = `${window.location.origin}/embed/${kind}/${encodeURIComponent(record.no)}`;
  return `<iframe src="${src}" title="livevote · ${attribute(record.name)}" width="100%" height="${HEIGHT[kind]}"`
    + ' style="border:0" loading="lazy"></iframe>';
}

/** Show the snippet of `record` ("subject" or "teacher"), or hide the box for null. */
export function showEmbed(kind, record) {
  const box = $("embed-box");
  box.hidden = record === null;
  if (record === null) return;
  box.dataset.kind = kind;
  $("embed-what").replaceChildren(`${LABEL[kind]} `, el("span", { translate: "no" }, `#${record.no} ${record.name}`));
  $("embed-code").value = embedSnippet(kind, record);
  $("embed-copied").textContent = "";
}

async function copySnippet() {
  const code = $("embed-code");
  const said = $("embed-copied");
  try {
    await navigator.clipboard.writeText(code.value);
    said.textContent = COPIED;
  } catch { // no clipboard here (a page not served over https, or permission refused): select it
    code.focus();
    code.select();
    said.textContent = COPY_BY_HAND;
  }
}

export function wireEmbed() {
  $("embed-copy").addEventListener("click", copySnippet);
}
