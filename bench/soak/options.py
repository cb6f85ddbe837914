"""The soak's command line: the options of one run, checked before anything starts."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import bench.soak
from bench.common import RESULTS
from bench.soak.faults import FAULT_KINDS, POSTGRES_FAULT

DESCRIPTION = (bench.soak.__doc__ or "").splitlines()[0]


@dataclass
class Options:
    """One run's flags (see --help)."""

    duration: float
    sockets: int
    voters: int
    rate: float
    fault_every: float
    faults: tuple[str, ...]
    subjects: int
    seed: int | None
    keep: bool
    results: str
    store: str = "sqlite"


def parse_options(argv: list[str] | None = None) -> Options:
    """`argv` (the command line's when None) checked, or the usage and exit status 2."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=DESCRIPTION)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of voting (default 600)")
    parser.add_argument("--sockets", type=int, default=1000, help="live pages (default 1000)")
    parser.add_argument("--voters", type=int, default=20, help="users voting (default 20)")
    parser.add_argument("--rate", type=float, default=20.0, help="votes per second, all users together (default 20)")
    parser.add_argument("--fault-every", type=float, default=60.0, help="seconds between faults (default 60)")
    parser.add_argument("--faults", help="kinds to cycle through (default worker,redis,nginx, and postgres with"
                                         " --store postgresql)")
    parser.add_argument("--subjects", type=int, default=5, help="subjects watched and voted on, 1-5 (default 5)")
    parser.add_argument("--seed", type=int, help="random seed (faults, votes, jitter)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs) instead of removing it")
    parser.add_argument("--results", default=str(RESULTS / "soak.json"), help="JSON result file ('' for none)")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                        help="sqlite (default, under the work dir) or postgresql (a throwaway server the soak starts)")
    args = parser.parse_args(argv)
    allowed = FAULT_KINDS if args.store == "postgresql" else tuple(k for k in FAULT_KINDS if k != POSTGRES_FAULT)
    kinds = tuple(kind for kind in (args.faults or ",".join(allowed)).split(",") if kind)
    if not kinds or set(kinds) - set(allowed):
        parser.error(f"--faults: a comma-separated subset of {','.join(allowed)} (postgres needs --store postgresql)")
    if args.voters < 1 or args.sockets < 1 or args.rate <= 0 or not 1 <= args.subjects <= 5:
        parser.error("--voters, --sockets, --rate must be positive, --subjects 1-5")
    return Options(args.duration, args.sockets, args.voters, args.rate, args.fault_every, kinds, args.subjects,
                   args.seed, args.keep, args.results, args.store)
