// JSON over fetch, as the client sends and reads it: a failed request is an HttpError that
// carries the server's problem document.

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

/** The reply's JSON; null when it has none (204, another type, a broken body). */
export async function readJson(response) {
  const type = response.headers.get("Content-Type") || "";
  if (response.status === 204 || !type.includes("json")) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/** POST `body` as JSON (nothing when undefined) with the cookies and `headers`; the reply's JSON, or an HttpError. */
export async function post(path, body, headers = {}) {
  const init = { method: "POST", credentials: "same-origin", headers: { Accept: "application/json", ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await readJson(response);
  if (!response.ok) throw new HttpError(response.status, data);
  return data;
}
