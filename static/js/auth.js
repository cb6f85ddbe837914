// Who this page acts as, and the REST calls made as them.
//
// The access token lives in this module's memory only: never localStorage, sessionStorage or
// a cookie written by script. A page that starts without one gets it by POST /api/auth/refresh,
// which the HttpOnly refresh cookie (Path=/api/auth) authenticates; when that fails, the user
// goes to login. A page anyone may watch holds a viewer token instead, which only opens the
// live channel. Whoever replaces the token (a cookie refresh, a token the socket pushed) tells
// the listeners of onTokenChange.
import { HttpError, isAuthError, post, readJson } from "./http.js";
import { stats } from "./stats.js";

export const LOGIN_PAGE = "/login.html";

let accessToken = null;
let currentUser = null;
let refreshing = null;
/** This page is on its way to another one: a `revoked` our own logout caused sends nobody to login twice. */
let leaving = false;
/** Watching without an account: this page holds a viewer token. */
let watching = false;
const tokenListeners = new Set();

export function user() {
  return currentUser;
}

export function hasToken() {
  return accessToken !== null;
}

export function currentToken() {
  return accessToken;
}

/** When the access token runs out (its `exp`, in ms of this browser's clock less `skewMs`), or 0 without one. */
export function tokenExpiresAt(skewMs = 0) {
  if (!accessToken) return 0;
  try {
    const payload = accessToken.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).exp * 1000 - skewMs;
  } catch { // not a JWT this page can read: treat it as spent
    return 0;
  }
}

export function isWatchingOnly() {
  return watching;
}

/** Call `listener(token, source)` whenever the token changes; returns the function that stops it. */
export function onTokenChange(listener) {
  tokenListeners.add(listener);
  return () => tokenListeners.delete(listener);
}

/** Replace the token (and the user, when `who` is given); `source` is who brought it, if anyone. */
export function setAccessToken(token, who, source = null) {
  accessToken = token;
  if (who) currentUser = who;
  for (const listener of tokenListeners) listener(token, source);
}

function forget() {
  setAccessToken(null);
  currentUser = null;
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
    forget();
    window.location.assign(LOGIN_PAGE);
  }
}

/**
 * End every session of this user (their sockets hear `revoked`), then go to login. Rejects, and
 * the page stays, when the sessions are still there; a session that had already ended goes on to login.
 */
export async function logoutEverywhere() {
  leaving = true; // our own socket hears `revoked` too: this page goes to login without the "ended elsewhere" note
  try {
    await api("/api/auth/logout-all", { method: "POST", auth: true });
  } catch (error) {
    if (!isAuthError(error)) {
      leaving = false;
      throw error;
    }
  }
  forget();
  window.location.assign(LOGIN_PAGE);
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

/** Go to the login page, asking it to bring the user back here (or to `next`, a same-site path). */
export function goLogin(reason, next = window.location.pathname + window.location.search) {
  if (leaving) return;
  leaving = true;
  setAccessToken(null);
  const params = new URLSearchParams({ next });
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
 * A viewer token, whoever is logged in on this browser: for a read-only page that must show what
 * anyone may see (a projector), never what this user's account may see.
 */
export async function watchOnly() {
  watching = true; // set first: a socket that reconnects after a failed request asks for a viewer token again
  await takeViewerToken();
}

/** A token for a (re)connecting socket: a new viewer token when the page only watches, else one by cookie. */
export function renewToken() {
  return watching ? takeViewerToken() : refreshByCookie();
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
