// Log in or register, then go back to where the user came from (?next=, same-site paths only).
import { HttpError, SERVER_UNREACHABLE, el, fieldText, login, notify, register, safeNext } from "./livevote.js";

const USERNAME = /^[A-Za-z0-9_.-]{3,32}$/;
const MIN_PASSWORD = 8;
const params = new URLSearchParams(window.location.search);
const next = safeNext(params.get("next") || "/");
let mode = "login";

const form = document.getElementById("auth-form");
const submit = document.getElementById("submit");
const username = document.getElementById("username");
const password = document.getElementById("password");

const TEXT = {
  login: {
    title: "欢迎回来 Welcome back",
    lead: "登录后即可投票，并实时看到票数变化。 Log in to vote and watch the counts move live.",
    submit: "登录 Log in",
    page: "livevote · 登录 Log in",
    autocomplete: "current-password",
  },
  register: {
    title: "创建账号 Create an account",
    lead: "注册一个账号，马上开始投票。 Register and start voting right away.",
    submit: "注册并登录 Register",
    page: "livevote · 注册 Register",
    autocomplete: "new-password",
  },
};

function fieldError(name, message) {
  const node = document.getElementById(`${name}-error`);
  if (!node) return;
  node.textContent = message || "";
  node.hidden = !message;
}

function clearErrors() {
  notify("");
  fieldError("username", "");
  fieldError("password", "");
}

function setMode(value) {
  mode = value;
  const text = TEXT[mode];
  document.getElementById("auth-title").textContent = text.title;
  document.getElementById("auth-lead").textContent = text.lead;
  submit.textContent = text.submit;
  password.autocomplete = text.autocomplete;
  document.getElementById("username-hint").hidden = mode !== "register";
  document.getElementById("password-hint").hidden = mode !== "register";
  document.getElementById("tab-login").setAttribute("aria-selected", String(mode === "login"));
  document.getElementById("tab-register").setAttribute("aria-selected", String(mode === "register"));
  document.title = text.page;
  clearErrors();
}

function showProblem(error) {
  if (!(error instanceof HttpError)) {
    notify(SERVER_UNREACHABLE);
    return;
  }
  const problem = error.problem;
  if (error.status === 401) notify("用户名或密码不正确。 Wrong username or password.");
  else if (error.status === 429) notify("尝试次数太多，请稍后再试。 Too many attempts; try again later.");
  else if (error.status === 409) fieldError("username", "这个用户名已被使用。 This username is taken.");
  else if (error.status === 422) notify("请修改标出的内容。 Please correct the marked fields.");
  else if (error.status === 503) notify("服务暂时不可用，请稍后再试。 The service is unavailable; try again shortly.");
  else notify(`出错了（HTTP ${error.status}），请稍后再试。 Something went wrong (HTTP ${error.status}); try again later.`);
  for (const item of problem.errors || []) fieldError(item.field, fieldText(item.code));
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors();
  const name = username.value.trim();
  if (!USERNAME.test(name)) {
    fieldError("username", fieldText("username_rule"));
    username.focus();
    return;
  }
  if (!password.value) {
    fieldError("password", "请输入密码。 Enter your password.");
    password.focus();
    return;
  }
  // The server checks the whole rule (a common password, the username inside); length is told at once.
  if (mode === "register" && password.value.length < MIN_PASSWORD) {
    fieldError("password", `密码至少需要 ${MIN_PASSWORD} 个字符。 At least ${MIN_PASSWORD} characters.`);
    password.focus();
    return;
  }
  submit.disabled = true;
  try {
    await (mode === "login" ? login(name, password.value) : register(name, password.value));
    window.location.replace(next);
  } catch (error) {
    showProblem(error);
    submit.disabled = false;
  }
});

document.getElementById("tab-login").addEventListener("click", () => setMode("login"));
document.getElementById("tab-register").addEventListener("click", () => setMode("register"));

const reason = params.get("reason");
if (reason === "revoked") {
  notify("你的会话已结束（已在别处退出登录），请重新登录。 Your session has ended (logged out elsewhere); please log in again.", "info");
} else if (params.has("next")) notify("请先登录。 Please log in first.", "info");

// A link back for those who came here by mistake.
document.getElementById("account").append(el("a", { class: "btn btn-quiet", href: next }, "← 返回 Back"));
