// How the admin page's forms write: field errors of a 422 next to their fields, in the page's
// words (fieldText(code)), the form keeping what was typed; other failures in the notice, in both
// languages; every delete confirmed in a <dialog> first.
import { HttpError, fieldText, notify } from "./livevote.js";

export const DENIED = "只有管理员可以编辑目录。 Only administrators can edit the catalog.";
const HAS_TEACHERS = "这个科目还有老师，先删除或移走他们。 This subject still has teachers: delete or move them first.";
const FIX_FIELDS = "请修改标出的内容。 Please correct the marked fields.";

/** Why a write failed: never the server's own (English) text. */
export function writeFailure(error, what) {
  if (!(error instanceof HttpError)) {
    return "没有保存：连不上服务器，请稍后再试。 Not saved: the server cannot be reached; try again shortly.";
  }
  switch (error.status) {
    case 401:
      return "会话已结束，请重新登录。 Your session has ended; please log in again.";
    case 403:
      return DENIED;
    case 404:
      return "这条记录已经不存在了（可能刚被删除）。 This record no longer exists (it may just have been deleted).";
    case 409:
      return what === "subject" ? HAS_TEACHERS : `冲突（HTTP 409），请刷新后再试。 Conflict (HTTP 409); reload and try again.`;
    case 413:
      return "内容太长了。 The text is too long.";
    case 422:
      return FIX_FIELDS;
    case 429:
    case 503:
      return "服务暂时不可用，请稍后再试。 The service is unavailable; try again shortly.";
    default:
      return `出错了（HTTP ${error.status}），请稍后再试。 Something went wrong (HTTP ${error.status}); try again later.`;
  }
}

/** A failure the fields do not show: in the notice, brought into view (the lists can be long). */
export function warn(text) {
  notify(text);
  document.getElementById("notice").scrollIntoView({ block: "nearest" });
}

// -- field errors ------------------------------------------------------------------------------

export function clearFieldErrors(form) {
  for (const node of form.querySelectorAll(".field-error")) {
    node.textContent = "";
    node.hidden = true;
  }
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
}

/** Each `{field, code}` next to its field; true when every one found its place. */
export function showFieldErrors(form, errors) {
  let placed = true;
  for (const item of errors || []) {
    const field = String(item.field || "");
    const node = form.querySelector(`.field-error[data-for="${CSS.escape(field)}"]`);
    if (!node) {
      placed = false;
      continue;
    }
    node.textContent = node.textContent ? `${node.textContent}；${fieldText(item.code)}` : fieldText(item.code);
    node.hidden = false;
    form.querySelector(`[name="${CSS.escape(field)}"]`)?.setAttribute("aria-invalid", "true");
  }
  return placed;
}

// -- the confirmation dialog -------------------------------------------------------------------

/** Ask before deleting; resolves true only on 删除 Delete (Esc and 取消 Cancel are no). */
export function confirmDelete(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "delete"), { once: true });
    dialog.showModal();
    document.getElementById("confirm-no").focus(); // the safe choice is the default one
  });
}

// -- writing -----------------------------------------------------------------------------------

/**
 * Send a form's write; the saved record, or null after the failure is shown (the form keeps its
 * text). `onGone` runs when the record was not there any more (404), to show the lists as they are.
 */
export async function write(form, what, send, onGone) {
  clearFieldErrors(form);
  notify("");
  const submit = form.querySelector('button[type="submit"]');
  submit.disabled = true;
  try {
    return await send();
  } catch (error) {
    let text = writeFailure(error, what);
    if (error instanceof HttpError && error.status === 422 && !showFieldErrors(form, error.problem.errors)) {
      const other = (error.problem.errors || []).map((item) => fieldText(item.code));
      text = `${text} ${other.join("；")}`;
    }
    if (error instanceof HttpError && error.status === 422) notify(text);
    else warn(text);
    if (error instanceof HttpError && error.status === 404) await onGone();
    return null;
  } finally {
    submit.disabled = false;
  }
}
