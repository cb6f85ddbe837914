"""Settings as a production deployment of the peer would have them: DEBUG off, JSON only,
persistent database connections, and no secret in the repository."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

DEBUG = False
# Generated at start unless given: one gunicorn worker signs and checks its own tokens.
# More than one worker needs DJANGO_SECRET_KEY set, so that they share it.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework", "bench.peers.drf"]
MIDDLEWARE = ["django.middleware.security.SecurityMiddleware", "django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "bench.peers.drf.urls"
WSGI_APPLICATION = "bench.peers.drf.wsgi.application"

# DRF_BENCH_DB is a SQLite file, or a postgresql:// URL (bench/ingest.py --store postgresql).
# On SQLite, as livevote's: WAL, a commit durable before the answer (synchronous=FULL), and writes
# that take the lock when they begin (BEGIN IMMEDIATE), so two threads never deadlock upgrading
# a read lock. On PostgreSQL, psycopg 3 in autocommit (Django's default), each vote one
# transaction.atomic. CONN_MAX_AGE=None keeps one connection per gunicorn thread instead of one
# per request.
_DB = urlsplit(os.environ["DRF_BENCH_DB"])
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _DB.path.lstrip("/"),
        "USER": _DB.username or "",
        "HOST": _DB.hostname or "",
        "PORT": _DB.port or "",
        "CONN_MAX_AGE": None,
    } if _DB.scheme in ("postgresql", "postgres") else {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["DRF_BENCH_DB"],
        "CONN_MAX_AGE": None,
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL",
            "transaction_mode": "IMMEDIATE",
            "timeout": 5,
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# Sign-in is not what is measured; the bench's livevote uses cheap argon2 settings for the same reason.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework_simplejwt.authentication.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
}
# livevote's access_ttl.
SIMPLE_JWT = {"ACCESS_TOKEN_LIFETIME": timedelta(seconds=900)}
