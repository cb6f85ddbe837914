// livevote.js: the one small client every page uses, in one import. Each concern has its module:
// auth.js (the access token, in memory only; cookie refresh; REST as the user), counts.js (the
// highest version wins), live-client.js (the live channel: live-socket.js or event-stream.js,
// reconnects, pushed tokens), dom.js and header.js (building the page, the header's pill and
// account corner), texts.js (the pages' words for the server's codes), stats.js (counters a
// test may read).
export {
  api,
  goLogin,
  hasToken,
  isWatchingOnly,
  login,
  loginOrWatch,
  logout,
  refreshByCookie,
  register,
  safeNext,
  tryLogin,
  user,
  watchOnly,
} from "./auth.js";
export { VersionedCounts } from "./counts.js";
export { el, notify } from "./dom.js";
export { showAccount, showState } from "./header.js";
export { HttpError, isAuthError } from "./http.js";
export { LiveClient } from "./live-client.js";
export { stats } from "./stats.js";
export { fieldText, SERVER_UNREACHABLE, SUBJECTS_DID_NOT_LOAD, TEACHERS_DID_NOT_LOAD } from "./texts.js";
