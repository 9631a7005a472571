"""Sets the Gmail popup cookie after a Firebase login on a Gmail route.

The client opens `/api/gmail/auth?userId=N` in a popup, which cannot carry the Firebase token
header. Before that, the client's Gmail page calls `/api/gmail/auth-status` (and polls it) with
the token: that answer carries a short-lived, signed, HttpOnly cookie limited to `/api/gmail/`,
which the popup then presents (fiveducks.authentication.GmailPopupCookieAuthentication).
"""

from __future__ import annotations

from django.conf import settings

from fiveducks.authentication import (
    GMAIL_COOKIE,
    GMAIL_COOKIE_MAX_AGE,
    GMAIL_COOKIE_PATH,
    gmail_cookie_value,
)


class GmailPopupCookieMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user_id = getattr(request, "fiveducks_firebase_user_id", None)
        if (
            user_id is not None
            and request.path_info.startswith(GMAIL_COOKIE_PATH)
            and response.status_code < 400
        ):
            response.set_cookie(
                GMAIL_COOKIE,
                gmail_cookie_value(user_id),
                max_age=GMAIL_COOKIE_MAX_AGE,
                path=GMAIL_COOKIE_PATH,
                secure=settings.SESSION_COOKIE_SECURE,
                httponly=True,
                samesite="Lax",
            )
        return response
