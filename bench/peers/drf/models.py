"""Teacher counters and one vote per (user, teacher). Tables and columns are named as in
livevote's SQLite schema (teachers.no, votes.teacher), so one query checks both."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models


class Teacher(models.Model):
    no = models.AutoField(primary_key=True)
    good_count = models.IntegerField(default=0)
    bad_count = models.IntegerField(default=0)
    version = models.IntegerField(default=0)

    class Meta:
        db_table = "teachers"


class Vote(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    teacher = models.ForeignKey(Teacher, on_delete=models.CASCADE, db_column="teacher")
    value = models.CharField(max_length=4, choices=[("good", "good"), ("bad", "bad")])

    class Meta:
        db_table = "votes"
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["user", "teacher"], name="one_vote_per_user_and_teacher"),
        ]
