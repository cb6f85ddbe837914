// Counters a test (or a curious person) may read: cookie refreshes, pushed tokens, socket
// connects. Nothing secret.
export const stats = { cookieRefreshes: 0, tokenPushes: 0, connects: 0 };
