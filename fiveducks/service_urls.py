"""The service API the platform's backend calls (`/api/service/...`, service credentials only)."""

from __future__ import annotations

urlpatterns: list = []
