"""`Authorization: Token <key>`, checked against the stored SHA-256 of each key."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from accounts.selectors import user_for_api_token


class HashedTokenAuthentication(TokenAuthentication):
    """DRF's token scheme (same header, same 401 + `WWW-Authenticate: Token`), hashed keys."""

    keyword = "Token"

    def authenticate_credentials(self, key):
        user = user_for_api_token(key=key)
        if user is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        return (user, None)
