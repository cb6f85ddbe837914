"""Peer: the Django REST framework stack livevote grew from, with livevote's vote semantics.

One Django app on SQLite (WAL), JWT sign-in from djangorestframework-simplejwt, one
transaction per vote, served by gunicorn. Needs requirements-bench.txt. The database
path comes from DRF_BENCH_DB; bootstrap.py creates its schema, teachers and users:

    DRF_BENCH_DB=/tmp/drf.db python -m bench.peers.drf.bootstrap --users 64
    DRF_BENCH_DB=/tmp/drf.db gunicorn bench.peers.drf.wsgi --workers 1 --worker-class gthread --threads 1
"""
