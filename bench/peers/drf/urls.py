from __future__ import annotations

from django.urls import path
from rest_framework_simplejwt.views import TokenObtainPairView

from bench.peers.drf import views

urlpatterns = [
    path("healthz", views.healthz),
    path("api/auth/login", TokenObtainPairView.as_view()),
    path("api/teachers/<int:no>/vote", views.vote),
]
