// What the pages say, in their languages, where the server speaks in codes or for developers.
// The pages' policy (docs/pages.md): Chinese, each string with its English gloss.

/**
 * What a field error's `code` means. The server's `message` is English for developers; a page
 * shows this instead, and the generic line for codes it does not know.
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
  closes_before_opens: "截止时间必须晚于开始时间 Must close after it opens",
  state_with_schedule: "不能同时设置状态和时间 State and schedule cannot come together",
  datetime_type: "应为日期和时间 Must be a date and time",
  datetime_from_date_parsing: "应为日期和时间 Must be a date and time",
  datetime_parsing: "应为日期和时间 Must be a date and time",
  timezone_aware: "需要时区 Needs a time zone",
};

export function fieldText(code) {
  return FIELD_TEXT[code] || "这一项不正确 Not valid";
}

/** A list that did not load (the subjects page and admin, the teachers page and admin). */
export const SUBJECTS_DID_NOT_LOAD = "无法加载科目，请稍后再试。 Could not load the subjects; try again shortly.";
export const TEACHERS_DID_NOT_LOAD = "无法加载老师，请稍后再试。 Could not load the teachers; try again shortly.";

/** A request that found no server (fetch failed): never the browser's own "Failed to fetch". */
export const SERVER_UNREACHABLE = "连不上服务器，请稍后再试。 Cannot reach the server; try again shortly.";
