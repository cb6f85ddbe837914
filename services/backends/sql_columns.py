"""The columns the SQL stores (SQLite, PostgreSQL) write and read, in the order of the models'
fields (services/models.py), so that a row makes a model positionally."""

from __future__ import annotations

SUBJECT_COLUMNS = ("name", "intro", "is_hot", "opens_at", "closes_at", "visibility")
TEACHER_COLUMNS = ("name", "sex", "birth", "photo", "intro", "subject")
"""What a create or an update may set."""
SUBJECT_ROW = "no, name, intro, is_hot, opens_at, closes_at, visibility"
TEACHER_ROW = "no, name, sex, birth, photo, intro, subject, good_count, bad_count, version"
USER_ROW = "id, username, role"
COUNTS_ROW = "no, subject, good_count, bad_count, version"
VOTED_SUBJECTS = "SELECT DISTINCT t.subject FROM votes v JOIN teachers t ON t.no = v.teacher WHERE v.user_id = $1"
VOTERS = "SELECT DISTINCT v.user_id FROM votes v JOIN teachers t ON t.no = v.teacher WHERE t.subject = $1"
"""Queries both SQL stores run ($1: SQLite's ? after a replace)."""
