"""The OpenAPI schema and its two viewers, served with assets from fivedocks itself.

Swagger UI and Redoc come from drf-spectacular-sidecar (pinned in requirements.txt, served as
static files), never from a CDN; Swagger UI's start-up script is a separate file (the split
view), so the Content Security Policy needs no inline scripts. With API_DOCS_STAFF_ONLY the
schema and both viewers answer staff only.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny, IsAdminUser


class _DocsAccess:
    def get_permissions(self):
        return [IsAdminUser()] if settings.API_DOCS_STAFF_ONLY else [AllowAny()]


class SchemaView(_DocsAccess, SpectacularAPIView):
    pass


class SwaggerView(_DocsAccess, SpectacularSwaggerSplitView):
    pass


class RedocView(_DocsAccess, SpectacularRedocView):
    pass
