// livevote.js: the one small client every page uses.
//
// - The access token lives in this module's memory only: never localStorage,
//   sessionStorage or a cookie written by script. A page that starts without
//   one gets it by POST /api/auth/refresh, which the HttpOnly refresh cookie
//   (Path=/api/auth) authenticates; when that fails, the user goes to login.
// - One WebSocket per page, protocol livevote.v1, the token as the subprotocol
//   `bearer.<jwt>`. Pushed `token` messages replace the access token, for the
//   socket and for REST alike. It reconnects with exponential backoff and
//   jitter, re-subscribes, and refreshes by cookie first when the close code
//   was 4001 or the socket was refused.
// - Counts: per teacher the highest `version` wins (VersionedCounts).

const LOGIN_PAGE = "/login.html";
const PROTOCOL = "livevote.v1";
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15000;
const PING_EVERY_MS = 20000;
const REPLY_TIMEOUT_MS = 10000;

// -- access token, in memory only --------------------------------------------

let accessToken = null;
let leaving = false;
let currentUser = null;
let refreshing = null;
const tokenListeners = new Set();
/** Counters a test (or a curious person) may read; nothing secret. */
export const stats = { cookieRefreshes: 0, tokenPushes: 0, connects: 0 };

export class HttpError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

/** True when the server said who we are is not good enough (as opposed to "unreachable"). */
export function isAuthError(error) {
  return error instanceof HttpError && (error.status === 401 || error.status === 403);
}

export function user() {
  return currentUser;
}

export function hasToken() {
  return accessToken !== null;
}

function setAccessToken(token, who, source = null) {
  accessToken = token;
  if (who) currentUser = who;
  for (const listener of tokenListeners) listener(token, source);
}

async function readJson(response) {
  const type = response.headers.get("Content-Type") || "";
  if (response.status === 204 || !type.includes("json")) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

async function post(path, body) {
  const init = { method: "POST", credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await readJson(response);
  if (!response.ok) throw new HttpError(response.status, data);
  return data;
}

/** A new access token through the HttpOnly refresh cookie; concurrent callers share one request. */
export function refreshByCookie() {
  if (!refreshing) {
    refreshing = post("/api/auth/refresh")
      .then((pair) => {
        stats.cookieRefreshes += 1;
        setAccessToken(pair.access_token, pair.user);
        return pair.user;
      })
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

export async function login(username, password) {
  const pair = await post("/api/auth/login", { username, password });
  setAccessToken(pair.access_token, pair.user);
  return pair.user;
}

export async function register(username, password) {
  await post("/api/auth/register", { username, password });
  return login(username, password);
}

/** End this session everywhere (the server takes the token from the cookie), then go to login. */
export async function logout() {
  leaving = true; // our own socket is about to hear `revoked`: this page goes to login without the "ended elsewhere" note
  try {
    await post("/api/auth/logout");
  } finally {
    setAccessToken(null);
    currentUser = null;
    window.location.assign(LOGIN_PAGE);
  }
}

/** Only same-site paths: anything else becomes "/". */
export function safeNext(raw) {
  if (typeof raw !== "string" || !raw.startsWith("/") || raw.startsWith("//") || raw.startsWith("/\\")) return "/";
  try {
    const url = new URL(raw, window.location.origin);
    if (url.origin !== window.location.origin) return "/";
    return url.pathname + url.search + url.hash;
  } catch {
    return "/";
  }
}

/** Go to the login page, asking it to bring the user back here. */
export function goLogin(reason) {
  if (leaving) return;
  leaving = true;
  setAccessToken(null);
  const params = new URLSearchParams({ next: window.location.pathname + window.location.search });
  if (reason) params.set("reason", reason);
  window.location.replace(`${LOGIN_PAGE}?${params}`);
}

/**
 * Whether this browser holds the refresh cookie: GET /api/auth/session answers {"cookie": true|false}
 * with 200 (the cookie is HttpOnly: only the server sees it). null when the server cannot say.
 */
async function hasSessionCookie() {
  try {
    const response = await fetch("/api/auth/session", { credentials: "same-origin", headers: { Accept: "application/json" } });
    const data = response.ok ? await readJson(response) : null;
    return typeof data?.cookie === "boolean" ? data.cookie : null;
  } catch {
    return null;
  }
}

/**
 * The user when a session cookie works, else null: for public pages. A visitor without the
 * cookie is not sent to refresh, so an anonymous page load makes no failing request.
 */
export async function tryLogin() {
  if (accessToken) return currentUser;
  if ((await hasSessionCookie()) === false) return null;
  try {
    return await refreshByCookie();
  } catch {
    return null;
  }
}

/** Watching without an account: this page holds a viewer token, which only opens the live channel. */
let watching = false;

export function isWatchingOnly() {
  return watching;
}

/** A viewer token (POST /api/auth/viewer) for a page with nobody logged in. */
async function takeViewerToken() {
  const issued = await post("/api/auth/viewer");
  watching = true;
  setAccessToken(issued.access_token, null);
}

/**
 * The user when a session cookie works; otherwise the page watches with a viewer token and this
 * resolves with null. For pages anyone may watch: only voting needs an account.
 */
export async function loginOrWatch() {
  const who = await tryLogin();
  if (who) return who;
  await takeViewerToken();
  return null;
}

/**
 * A JSON request to the REST API. With `auth`, it carries the bearer token and,
 * on a 401, refreshes by cookie once and tries again.
 */
export async function api(path, { method = "GET", body, auth = false } = {}) {
  const attempt = async () => {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (auth && accessToken) headers.Authorization = `Bearer ${accessToken}`;
    const response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { response, data: await readJson(response) };
  };
  let { response, data } = await attempt();
  if (auth && response.status === 401) {
    try {
      await refreshByCookie();
    } catch (error) {
      if (isAuthError(error)) goLogin();
      throw error;
    }
    ({ response, data } = await attempt());
  }
  if (!response.ok) throw new HttpError(response.status, data);
  return data;
}

// -- counts: the highest version wins ------------------------------------------

export class VersionedCounts {
  constructor() {
    this.byNo = new Map();
  }

  /** Keep `update` ({no, good_count, bad_count, version}) unless a newer or equal version is known; true when kept. */
  apply(update) {
    const known = this.byNo.get(update.no);
    if (known && known.version >= update.version) return false;
    this.byNo.set(update.no, {
      no: update.no,
      good_count: update.good_count,
      bad_count: update.bad_count,
      version: update.version,
    });
    return true;
  }

  get(no) {
    return this.byNo.get(no);
  }
}

// -- the live socket ---------------------------------------------------------------

function socketUrl() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}/ws`;
}

/**
 * One WebSocket that stays connected while the page is open.
 * `onMessage(message)` gets every server message; `onState(state)` gets
 * "connecting", "live" or "reconnecting".
 */
export class LiveClient {
  constructor({ channels = [], onMessage = () => {}, onState = () => {} } = {}) {
    this.channels = new Set(channels);
    this.onMessage = onMessage;
    this.onState = onState;
    this.ws = null;
    this.state = "connecting";
    this.failures = 0;
    this.nextId = 1;
    this.pending = new Map();
    this.timer = null;
    this.pinger = null;
    this.stopped = false;
    this.revoked = false;
    this.needsFreshToken = false;
    // A token this page got elsewhere (a cookie refresh after a REST 401) is handed to the socket too.
    this.onToken = (token, source) => {
      if (token && source !== this && this.state === "live") this.send("auth", { access_token: token }).catch(() => {});
    };
  }

  start() {
    tokenListeners.add(this.onToken);
    window.addEventListener("pagehide", () => this.stop());
    // Back from the back/forward cache: the socket was closed on the way out, start afresh.
    window.addEventListener("pageshow", (event) => {
      if (event.persisted) window.location.reload();
    });
    this.connect();
    return this;
  }

  stop() {
    this.stopped = true;
    tokenListeners.delete(this.onToken);
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    if (this.ws) this.ws.close(1000);
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.onState(state);
  }

  async connect() {
    if (this.stopped) return;
    this.setState(this.failures ? "reconnecting" : "connecting");
    if (this.needsFreshToken || !accessToken) {
      try {
        await (watching ? takeViewerToken() : refreshByCookie());
        this.needsFreshToken = false;
      } catch (error) {
        if (isAuthError(error) && !watching) {
          goLogin();
          return;
        }
        this.retryLater();
        return;
      }
    }
    let ws;
    try {
      ws = new WebSocket(socketUrl(), [PROTOCOL, `bearer.${accessToken}`]);
    } catch {
      this.retryLater();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this.handle(message);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pinger);
      for (const { reject, timeout } of this.pending.values()) {
        clearTimeout(timeout);
        reject(new Error("socket closed"));
      }
      this.pending.clear();
      if (this.revoked || event.code === 4003) {
        goLogin("revoked");
        return;
      }
      if (this.stopped) return;
      this.needsFreshToken = event.code === 4001 || !opened;
      this.retryLater();
    };
  }

  retryLater() {
    if (this.stopped) return;
    this.failures += 1;
    this.setState("reconnecting");
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** (this.failures - 1));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  handle(message) {
    switch (message.type) {
      case "welcome":
        stats.connects += 1;
        this.failures = 0;
        this.setState("live");
        for (const channel of this.channels) this.send("subscribe", { channel }).catch(() => {});
        clearInterval(this.pinger);
        this.pinger = setInterval(() => this.ping(), PING_EVERY_MS);
        break;
      case "token":
        stats.tokenPushes += 1;
        setAccessToken(message.access_token, null, this);
        break;
      case "tokens":
        setAccessToken(message.access_token, message.user, this);
        break;
      case "revoked":
        this.revoked = true;
        goLogin("revoked");
        break;
      case "ack":
      case "pong":
      case "error":
        this.settle(message);
        break;
      default:
        break;
    }
    this.onMessage(message);
  }

  settle(message) {
    const waiter = message.id === undefined ? undefined : this.pending.get(message.id);
    if (!waiter) return;
    this.pending.delete(message.id);
    clearTimeout(waiter.timeout);
    if (message.type === "error") waiter.reject(Object.assign(new Error(message.message), { code: message.code }));
    else waiter.resolve(message);
  }

  /** Send an op; resolves with its ack or pong, rejects with its error. */
  send(op, fields = {}) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error("not connected"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timeout = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no reply to ${op}`));
      }, REPLY_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timeout });
      ws.send(JSON.stringify({ op, id, ...fields }));
    });
  }

  async ping() {
    const ws = this.ws;
    try {
      await this.send("ping");
    } catch {
      // No pong in time: the connection is dead although no close came. Start over.
      if (this.ws === ws && ws) ws.close(4000);
    }
  }

  subscribe(channel) {
    this.channels.add(channel);
    if (this.state === "live") this.send("subscribe", { channel }).catch(() => {});
  }

  unsubscribe(channel) {
    this.channels.delete(channel);
    if (this.state === "live") this.send("unsubscribe", { channel }).catch(() => {});
  }
}

// -- DOM helpers: text only, never markup from data -----------------------------------

/** createElement with attributes and children; strings become text nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const STATE_LABELS = {
  connecting: "连接中… connecting",
  live: "实时 live",
  reconnecting: "重新连接中… reconnecting…",
  offline: "离线 offline",
};

/** Show a connection state in the header pill (#conn). */
export function showState(state) {
  const pill = document.getElementById("conn");
  if (!pill) return;
  pill.hidden = false;
  pill.dataset.state = state;
  document.body.dataset.conn = state; // counts look stale while the socket is away
  pill.textContent = STATE_LABELS[state] || state;
  pill.dataset.connects = String(stats.connects);
  pill.dataset.tokenPushes = String(stats.tokenPushes);
  pill.dataset.cookieRefreshes = String(stats.cookieRefreshes);
}

/**
 * Fill the header's account corner (#account): the user, a logout button and a "log out
 * everywhere" button (every session of this user ends; their sockets hear `revoked`), or a login link.
 */
export function showAccount(who) {
  const corner = document.getElementById("account");
  if (!corner) return;
  corner.replaceChildren();
  if (who) {
    const logoutEverywhere = async (event) => {
      const button = event.currentTarget;
      button.disabled = true;
      leaving = true; // our own socket hears `revoked` too: this page goes to login without the "ended elsewhere" note
      try {
        await api("/api/auth/logout-all", { method: "POST", auth: true });
      } catch (error) {
        if (!isAuthError(error)) { // the sessions are still there: stay, and say so
          leaving = false;
          button.disabled = false;
          notify("没能退出所有设备，请稍后再试。 Could not log out everywhere; please try again.");
          return;
        } // else this session had already ended: on to login all the same
      }
      setAccessToken(null);
      currentUser = null;
      window.location.assign(LOGIN_PAGE);
    };
    if (who.role === "admin") { // the catalog's admin page; nobody else is shown the way there
      const here = window.location.pathname === "/admin.html";
      corner.append(el("a", { class: "btn btn-quiet", id: "admin-link", href: "/admin.html", "aria-current": here ? "page" : null },
        "管理", el("span", { class: "en" }, " Admin")));
    }
    corner.append(
      el("span", { class: "who", title: who.role === "admin" ? "管理员 admin" : "" }, who.username),
      el("button", { type: "button", class: "btn btn-quiet", id: "logout", onclick: () => logout() }, "退出", el("span", { class: "en" }, " Log out")),
      el("button", { type: "button", class: "btn btn-quiet", id: "logout-all", onclick: logoutEverywhere }, "退出所有设备", el("span", { class: "en" }, " Log out everywhere")),
    );
  } else {
    const next = new URLSearchParams({ next: window.location.pathname + window.location.search });
    corner.append(el("a", { class: "btn btn-quiet", href: `${LOGIN_PAGE}?${next}` }, "登录", el("span", { class: "en" }, " Log in")));
  }
}

/**
 * What a field error's `code` means, in the page's languages. The server's `message` is
 * English for developers; a page shows this instead, and the generic line for codes it
 * does not know.
 */
const FIELD_TEXT = {
  missing: "必填 Required",
  extra_forbidden: "不认识的字段 Unknown field",
  object_type: "请求格式不对 Not a JSON object",
  string_type: "应为文字 Must be text",
  string_too_short: "太短了 Too short",
  string_too_long: "太长了 Too long",
  string_pattern_mismatch: "格式不对 Wrong format",
  bool_type: "应为是或否 Must be yes or no",
  integer_type: "应为整数 Must be a whole number",
  int_type: "应为整数 Must be a whole number",
  int_from_float: "应为整数 Must be a whole number",
  greater_than_equal: "数值太小 Too small",
  less_than_equal: "数值太大 Too large",
  date_type: "应为日期，如 1980-05-17 Must be a date",
  date_from_datetime_parsing: "应为日期，如 1980-05-17 Must be a date",
  literal_error: "不是可选的值 Not one of the choices",
  canonical_integer: "应为正整数 Must be a positive whole number",
  username_rule: "用户名为 3–32 个字符：字母、数字、_ . - 3–32 letters, digits, _ . -",
  password_has_username: "密码不能包含用户名 Must not contain the username",
  password_too_weak: "密码太容易被猜到，请换一个更长或更少见的 Too easy to guess",
  no_such_subject: "没有这个科目 No such subject",
};

export function fieldText(code) {
  return FIELD_TEXT[code] || "这一项不正确 Not valid";
}

/** A message in the page's notice area (#notice); empty text hides it. */
export function notify(text, kind = "error") {
  const box = document.getElementById("notice");
  if (!box) return;
  box.textContent = text || "";
  box.dataset.kind = kind;
  box.hidden = !text;
}

/** Keep the state pill's counters current (they change without a state change). */
tokenListeners.add(() => {
  const pill = document.getElementById("conn");
  if (pill && pill.dataset.state) showState(pill.dataset.state);
});
