"""Soak: the scaled deployment under load and recurring faults, checked for lost votes and stale pages.

    python -m bench.soak [--duration 600] [--sockets 1000] [--voters 20] [--rate 20] [--fault-every 60]
                         [--store sqlite|postgresql]

from the repository root. The package by concern: options (the command line), stack (the
deployment, started and stopped whole), accounts (users and voters), pages (the live sockets),
staleness, tally (what pages and voters observe as they run), faults, probes (what is read from
the workers, the cluster and /proc), checks (after the voting), report, and run (the command
and the run's order, the only module that knows them all; none imports it).

What runs, on free ports in one temp dir, all stopped and removed at the end (Ctrl-C included):
a 3 master + 3 replica Redis Cluster (tests/harness/redis_cluster.py), one `python server.py --workers 3
--redis-cluster` (server.xheaders on), and nginx from deploy/nginx.conf in front of it over TLS
(tests/harness/nginx.py). The store is SQLite under the work dir, or with `--store postgresql` a
throwaway PostgreSQL the soak starts itself (tests/harness/postgres_server.py, one database that
every worker uses): not a URL of yours, as its fault restarts the server. Not pinned to cores,
unlike the throughput benchmarks: this one is about correctness under faults, on whatever the
machine has.

- Pages: --sockets WebSockets through nginx with the page's Origin and a bearer subprotocol
  (docs/protocol.md), each on one channel (subject:1..N round robin with dashboard). Like
  static/js/live-client.js they subscribe on `welcome`, keep per teacher the counts of the highest
  version, and after a close reconnect with backoff (0.5 s doubling to 15 s, equal jitter, reset
  by a welcome); a 401 at the handshake logs their user in again.
- Voters: --voters users cast --rate votes/s in all, round robin, each turn one user switching
  its vote on a random teacher to another value (good, bad, or withdrawn with DELETE) over REST
  through nginx. A failed request (502 while a worker dies, 503 while Redis fails over, a reset)
  is sent again, unchanged, until acknowledged: a vote sets a value, so a repeat is harmless, and
  each user's last acknowledged vote per teacher is then exactly what the store must hold. A
  user still busy when its turn comes skips it (counted).
- Faults, every --fault-every s, cycling through the kinds in a new shuffled order each round so
  that a short run sees each kind: kill -9 of a worker (the supervisor forks a new one; done when
  the new one logs that it listens), kill -9 of a Redis master (done when its replica has taken
  over and the node, started again, has rejoined as a replica and the cluster is healthy), SIGHUP
  to nginx (a reload; done when a new nginx worker exists and /healthz answers through it), and
  with --store postgresql a PostgreSQL restart (pg_ctl stop -m fast, then start; done when /readyz,
  which pings the store, answers 200 through nginx again).

What it reports, as tables and then one JSON line (the last line of stdout); the exit status is
1 when lost, mismatch, stale_sockets, unsettled_votes or wrong_acks is not 0, or a fault did not
recover (the server's exit code and ERROR lines are reported, not judged):
- lost: (user, teacher) pairs whose vote in the store (GET /api/teachers/N/vote as that user) is
  not that user's last acknowledged one. mismatch: sum over teachers of the differences between
  GET /api/teachers/N's good/bad counts and what all users' last acknowledged votes add up to.
- stale_sockets: pages not subscribed, or not showing the store (per teacher counts and version;
  dashboards: every subject's totals and votes_total), at the deadline: 5 s after the later of
  the last vote's acknowledgement and the end of the last fault's recovery (polled until then;
  converge_ms is when all of them did).
- staleness of a vote: from t, when its acknowledgement reached the voter, until every page that
  was subscribed to the teacher's subject at t shows a version >= the acknowledged one, over the
  same socket or one it reconnected with (0 when all of them already did). A vote follows a fault
  when [t, that moment] overlaps the fault's window, from its start until 5 s after it recovered;
  max_stale_after_fault_ms is the max over such votes (also per fault), and the others give the
  baseline (max and p99). Dashboards carry no version, so only the final check covers them.
- rss: each worker (child of the supervisor), mean VmRSS over the first and the last third of
  the voting time, sampled every second; a worker started after a kill is a row of its own.
- pub/sub per vote, over the voting time, divided by the count changes (the sum of the teachers'
  version increments): livevote_vote_feed_messages_total summed over workers (each scraped on a
  keep-alive connection of its own, found through /proc and opened again after the worker's idle
  timeout closed it; read just before a worker is killed, a new worker counted from 0), and
  cmdstat_spublish calls summed over the cluster's nodes (INFO commandstats; read just before a
  master is killed, a restarted node counted from 0).
"""
