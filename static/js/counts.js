// Vote counts as they arrive from REST replies, snapshots and pushes, in any order: per teacher
// the highest `version` wins. A change of who may see them (the subject's visibility) keeps the
// version: at an equal version, counts that were withheld (null) are filled in once they may be
// seen, and counts shown are withheld again once they may not.

export class VersionedCounts {
  constructor() {
    this.byNo = new Map();
  }

  /** Keep `update` ({no, good_count, bad_count, version}) unless a newer or equal version is known
   * (an equal one gives way when only one of the two is withheld); true when kept. */
  apply(update) {
    const known = this.byNo.get(update.no);
    const sightChanged = known && known.version === update.version
      && (known.good_count === null) !== (update.good_count === null);
    if (known && known.version >= update.version && !sightChanged) return false;
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
