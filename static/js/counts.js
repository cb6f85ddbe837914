// Vote counts as they arrive from REST replies, snapshots and pushes, in any order: per teacher
// the highest `version` wins. Counts withheld (null: the subject's visibility) are filled in by
// the same version's counts once they may be seen: a reveal changes who sees, not the version.

export class VersionedCounts {
  constructor() {
    this.byNo = new Map();
  }

  /** Keep `update` ({no, good_count, bad_count, version}) unless a newer or equal version is known
   * (an equal one with its counts withheld gives way to the counts); true when kept. */
  apply(update) {
    const known = this.byNo.get(update.no);
    const revealed = known && known.version === update.version && known.good_count === null
      && update.good_count !== null;
    if (known && known.version >= update.version && !revealed) return false;
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
