"""`Authorization: Bearer fd_svc_...`: service clients, distinct from user tokens.

Only the service API accepts these, and the service API accepts nothing else: a user's token or
session never authenticates there (no user is ever the caller of `/api/service/`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission

from fiveducks import selectors, services
from fiveducks.models import ServiceClient

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServicePrincipal:
    """What `request.user` is on the service API: the client, never a platform user."""

    client: ServiceClient

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    is_active = True

    @property
    def pk(self) -> str:
        return self.client.owner  # keys throttles and caches per client, apart from users

    def __str__(self) -> str:
        return f"service client {self.client.name}"


class ServiceClientAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: Bearer fd_svc_... expected.")
        try:
            token = header[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid service credentials.") from None
        secret = selectors.secret_for_token(token)
        if secret is None:
            # The token itself is never logged; its public key id is, when it has one.
            key_id = token.removeprefix(services.TOKEN_PREFIX).partition("_")[0][:16]
            logger.warning("service api: unknown or revoked secret (key id %s)", key_id or "-")
            raise exceptions.AuthenticationFailed("Invalid service credentials.")
        if secret.client.is_disabled:
            logger.warning("service api: disabled client %s refused", secret.client.name)
            raise exceptions.AuthenticationFailed("This service client is disabled.")
        services.mark_used(secret=secret)
        return ServicePrincipal(secret.client), secret.client

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="service"'


class IsServiceClient(BasePermission):
    """Authenticated by a service secret, and holding the view's `required_scope`."""

    message = "This service client lacks the scope this endpoint needs."

    def has_permission(self, request, view) -> bool:
        client = request.auth
        if not isinstance(client, ServiceClient):
            raise exceptions.NotAuthenticated("Service credentials (Bearer fd_svc_...) are required.")
        required = getattr(view, "required_scope", None)
        if required and required not in client.scopes:
            self.message = f"This service client lacks the {required!r} scope."
            return False
        return True


class ServiceClientScheme(OpenApiAuthenticationExtension):
    target_class = ServiceClientAuthentication
    name = "serviceClient"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "fd_svc_<key id>_<secret>",
            "description": "A service client's secret (manage.py service_client create NAME --scopes ...).",
        }
