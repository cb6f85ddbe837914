// The header's live parts, the same on every page: the connection pill (#conn) and the account
// corner (#account).
import { LOGIN_PAGE, logout, logoutEverywhere, onTokenChange } from "./auth.js";
import { el, notify } from "./dom.js";
import { stats } from "./stats.js";

const STATE_LABELS = {
  connecting: "连接中… connecting",
  live: "实时 live",
  reconnecting: "重新连接中… reconnecting…",
  offline: "离线 offline",
};

/**
 * Show a connection state in the header pill (#conn), and when live its transport: "WebSocket",
 * or "SSE" where the page fell back to Server-Sent Events.
 */
export function showState(state, transport = null) {
  const pill = document.getElementById("conn");
  if (!pill) return;
  pill.hidden = false;
  pill.dataset.state = state;
  if (transport) pill.dataset.transport = transport;
  else delete pill.dataset.transport;
  document.body.dataset.conn = state; // counts look stale while the live channel is away
  const label = STATE_LABELS[state] || state;
  pill.textContent = transport ? `${label} · ${transport}` : label;
  pill.dataset.connects = String(stats.connects);
  pill.dataset.tokenPushes = String(stats.tokenPushes);
  pill.dataset.cookieRefreshes = String(stats.cookieRefreshes);
}

/** Keep the state pill's counters current (they change without a state change). */
onTokenChange(() => {
  const pill = document.getElementById("conn");
  if (pill && pill.dataset.state) showState(pill.dataset.state, pill.dataset.transport);
});

async function logOutEverywhere(event) {
  const button = event.currentTarget;
  button.disabled = true;
  try {
    await logoutEverywhere();
  } catch { // the sessions are still there: stay, and say so
    button.disabled = false;
    notify("没能退出所有设备，请稍后再试。 Could not log out everywhere; please try again.");
  }
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
    if (who.role === "admin") { // the catalog's admin page; nobody else is shown the way there
      const here = window.location.pathname === "/admin.html";
      corner.append(el("a", { class: "btn btn-quiet", id: "admin-link", href: "/admin.html", "aria-current": here ? "page" : null },
        "管理", el("span", { class: "en" }, " Admin")));
    }
    corner.append(
      el("span", { class: "who", translate: "no", title: who.role === "admin" ? "管理员 Admin" : "" }, who.username),
      el("button", { type: "button", class: "btn btn-quiet", id: "logout", onclick: () => logout() }, "退出", el("span", { class: "en" }, " Log out")),
      el("button", { type: "button", class: "btn btn-quiet", id: "logout-all", onclick: logOutEverywhere }, "退出所有设备", el("span", { class: "en" }, " Log out everywhere")),
    );
  } else {
    const next = new URLSearchParams({ next: window.location.pathname + window.location.search });
    corner.append(el("a", { class: "btn btn-quiet", href: `${LOGIN_PAGE}?${next}` }, "登录", el("span", { class: "en" }, " Log in")));
  }
}
