"""OpenAPI: the platform's logins as security schemes, and operation ids for the legacy paths."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from fivedocks.schema import AutoSchema


class FirebaseScheme(OpenApiAuthenticationExtension):
    target_class = "fiveducks.authentication.FirebaseAuthentication"
    name = "firebaseIdToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "Firebase ID token (JWT)"}


class PlatformSessionScheme(OpenApiAuthenticationExtension):
    target_class = "fiveducks.authentication.PlatformSessionAuthentication"
    name = "platformSession"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "connect.sid"}


class GmailPopupScheme(OpenApiAuthenticationExtension):
    target_class = "fiveducks.authentication.GmailPopupCookieAuthentication"
    name = "gmailPopupCookie"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "fd_gmail_popup"}


class LegacyAutoSchema(AutoSchema):
    """Operation ids prefixed `legacy_` (the paths differ from the API's by a trailing slash)."""

    def get_operation_id(self):
        return "legacy_" + super().get_operation_id()
