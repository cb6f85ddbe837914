"""PUT/DELETE /api/teachers/<no>/vote as livevote answers them, and GET /healthz."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.shortcuts import get_object_or_404
from rest_framework import serializers
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from bench.peers.drf.models import Teacher, Vote


class VoteSerializer(serializers.Serializer):
    value = serializers.ChoiceField(choices=["good", "bad"])


@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
def healthz(request: Request) -> Response:
    return Response({"status": "ok"})


@api_view(["PUT", "DELETE"])
def vote(request: Request, no: int) -> Response:
    value = None
    if request.method == "PUT":
        serializer = VoteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        value = serializer.validated_data["value"]
    teacher = set_vote(request.user, no, value)
    return Response({"teacher": teacher.no, "value": value, "good_count": teacher.good_count,
                     "bad_count": teacher.bad_count, "version": teacher.version})


@transaction.atomic
def set_vote(user: AbstractBaseUser, no: int, value: str | None) -> Teacher:
    """One transaction: upsert or delete the vote, move the counters by the difference; a vote
    that changes nothing writes nothing."""
    old = Vote.objects.filter(user=user, teacher_id=no).values_list("value", flat=True).first()
    if old != value:
        # int(): PostgreSQL has no integer + boolean (SQLite takes a bool as 0 or 1).
        moved = Teacher.objects.filter(no=no).update(
            good_count=F("good_count") + int(value == "good") - int(old == "good"),
            bad_count=F("bad_count") + int(value == "bad") - int(old == "bad"),
            version=F("version") + 1,
        )
        if not moved:
            raise NotFound(f"There is no teacher {no}.")
        if value is None:
            Vote.objects.filter(user=user, teacher_id=no).delete()
        else:
            Vote.objects.bulk_create([Vote(user=user, teacher_id=no, value=value)], update_conflicts=True,
                                     unique_fields=["user", "teacher"], update_fields=["value"])
    return get_object_or_404(Teacher, no=no)
