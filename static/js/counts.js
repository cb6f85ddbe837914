// Vote counts as they arrive from REST replies, snapshots and pushes, in any order: per teacher
// the highest `version` wins.

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
