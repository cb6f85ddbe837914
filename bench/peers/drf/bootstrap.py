"""The setup step, instead of manage.py: schema, the teachers 1..15 and users bench0..N-1
(password "load test passphrase", as in bench/votes.py), in a fresh DRF_BENCH_DB."""

from __future__ import annotations

import argparse
import os

import django
from django.core.management import call_command

TEACHERS = 15
PASSWORD = "load test passphrase"


def main(users: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.peers.drf.settings")
    django.setup()
    from django.contrib.auth.models import User

    from bench.peers.drf.models import Teacher

    # The apps with migrations (auth) first: run_syncdb creates the peer's tables before them,
    # and PostgreSQL, unlike SQLite, checks that a foreign key's table (auth_user) exists.
    call_command("migrate", verbosity=0)
    call_command("migrate", run_syncdb=True, verbosity=0)
    Teacher.objects.bulk_create(Teacher() for _ in range(TEACHERS))
    for index in range(users):
        User.objects.create_user(f"bench{index}", password=PASSWORD)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=64)
    main(parser.parse_args().users)
