// Vote history for the pages' charts: the last hour, minute by minute, read from the history
// routes on load (so a reload keeps the chart) and extended from the socket's messages.
import { api } from "./livevote.js";

export const WINDOW_MINUTES = 60;
const MINUTE_MS = 60_000;
const TICKS = 4;

export function currentMinute() {
  return Math.floor(Date.now() / MINUTE_MS);
}

/** The history of each path (`/api/subjects/1/history`: the last hour by minute), as one answer's buckets. */
export async function loadHistory(paths) {
  return Promise.all(paths.map((path) => api(path)));
}

/**
 * minute (since 1970) -> {good, bad, votes}: the counts at the end of each minute and the vote
 * changes within it, for the last WINDOW_MINUTES minutes. A minute nobody voted in carries the
 * counts of the one before.
 */
export class MinuteSeries {
  constructor() {
    this.byMinute = new Map();
    this.recorded = 0;
  }

  /**
   * Replace everything with the history `read()` brings. An answer may predate changes the socket
   * brought while it was read, which loading it would undo: then it is read again (three reads at
   * most; under a steady flow of votes the next snapshot's read catches up).
   */
  async reload(read) {
    for (let attempt = 0; attempt < 3; attempt++) {
      const seen = this.recorded;
      this.load(await read());
      if (this.recorded === seen) return;
    }
  }

  /** Replace everything with history answers, summed (a dashboard adds up its subjects). */
  load(histories) {
    const sums = new Map();
    for (const history of histories) {
      for (const bucket of history.buckets) {
        const minute = Math.floor(Date.parse(bucket.at) / MINUTE_MS);
        const sum = sums.get(minute) || { good: 0, bad: 0, votes: 0 };
        sum.good += bucket.good_count;
        sum.bad += bucket.bad_count;
        sum.votes += bucket.votes;
        sums.set(minute, sum);
      }
    }
    this.byMinute = sums;
    this.trim();
  }

  /** Counts seen now (either may be null: unknown), and `votes` more changes in this minute. */
  record(good, bad, votes) {
    this.recorded += 1;
    const minute = currentMinute();
    const last = this.latest();
    const point = this.byMinute.get(minute) || { good: last.good, bad: last.bad, votes: 0 };
    if (good !== null) point.good = good;
    if (bad !== null) point.bad = bad;
    point.votes += votes;
    this.byMinute.set(minute, point);
    this.trim();
  }

  /** The newest counts known ({good: 0, bad: 0} before any). */
  latest() {
    const minutes = [...this.byMinute.keys()];
    if (!minutes.length) return { good: 0, bad: 0, votes: 0 };
    return this.byMinute.get(Math.max(...minutes));
  }

  /** Every minute of the window up to now, oldest first: [{minute, good, bad, votes}]. */
  window() {
    const end = currentMinute();
    const points = [];
    let carried = null;
    for (const [minute, point] of this.byMinute) {
      if (minute <= end - WINDOW_MINUTES && (!carried || minute > carried.minute)) carried = { minute, ...point };
    }
    let good = carried ? carried.good : 0;
    let bad = carried ? carried.bad : 0;
    for (let minute = end - WINDOW_MINUTES + 1; minute <= end; minute++) {
      const point = this.byMinute.get(minute);
      if (point) ({ good, bad } = point);
      points.push({ minute, good, bad, votes: point ? point.votes : 0 });
    }
    return points;
  }

  /** Votes per second over the last minute: this minute's votes, and the part of the previous one that is still within it. */
  rate() {
    const now = Date.now() / MINUTE_MS;
    const minute = Math.floor(now);
    const previous = this.byMinute.get(minute - 1)?.votes || 0;
    const current = this.byMinute.get(minute)?.votes || 0;
    return (current + previous * (1 - (now - minute))) / 60;
  }

  trim() {
    const oldest = currentMinute() - WINDOW_MINUTES - 1;
    for (const minute of [...this.byMinute.keys()]) if (minute < oldest) this.byMinute.delete(minute);
  }
}

/** A round step for TICKS grid lines that covers `value`: 1, 2, 5, 10, 20, 50… */
function niceStep(value) {
  const rough = Math.max(1, value / TICKS);
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  for (const step of [1, 2, 5, 10]) if (rough <= step * magnitude) return step * magnitude;
  return 10 * magnitude;
}

/**
 * Prepare `canvas` and draw the grid for values up to `highest`; the plot's box and the top of
 * its scale, or null while the canvas has no size.
 */
export function chartFrame(canvas, highest) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (!width || !height) return null;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const left = 34;
  const top = 8;
  const plot = { ctx, left, top, width: width - left - 4, height: height - top - 6 };
  const step = niceStep(highest);
  ctx.font = "12px system-ui, sans-serif";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= TICKS; i++) {
    const y = top + plot.height - (plot.height * i) / TICKS;
    ctx.strokeStyle = i === 0 ? "#c9d0de" : "#edf0f5";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(left, Math.round(y) + 0.5);
    ctx.lineTo(width - 4, Math.round(y) + 0.5);
    ctx.stroke();
    ctx.fillStyle = "#8a94a6";
    ctx.fillText(String(step * i), left - 6, y);
  }
  plot.ceiling = step * TICKS;
  return plot;
}

/** One line per series of `values` (numbers, oldest first), each in its colour. */
export function drawLines(canvas, lines) {
  const highest = Math.max(1, ...lines.flatMap((line) => line.values));
  const plot = chartFrame(canvas, highest);
  if (!plot) return;
  const { ctx } = plot;
  for (const { values, colour } of lines) {
    const slot = plot.width / Math.max(1, values.length - 1);
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    ctx.beginPath();
    values.forEach((value, index) => {
      const x = plot.left + index * slot;
      const y = plot.top + plot.height - (plot.height * value) / plot.ceiling;
      if (index) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
    });
    ctx.stroke();
  }
}
