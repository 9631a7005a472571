"""The platform's logins through the shared credential cache (accounts.credential_cache).

- A Firebase ID token, once google-auth has verified it, is remembered as `(user id, Firebase
  uid)` until the token's `exp` and never past it: a repeated request skips the RSA
  verification and the user lookup. Firebase cannot revoke an ID token we would hear of (the
  platform never checked revocation either); the user's own state is read on every request.
- A platform session (`connect.sid`) lives in the platform's database, which tells fivedocks
  nothing when it changes (a logout deletes the row): it is remembered for at most
  `SESSION_MAX_AGE` seconds and never past its `expire`. The cookie's signature is checked on
  every request (an HMAC, no query); the entry is keyed by the session id it signs.

On a hit the user is read as for an API token (`accounts.selectors.active_user`, through
cachalot): a user deactivated in fivedocks is refused on the next request, in every worker.
"""

from __future__ import annotations

import time

from django.conf import settings

from accounts import credential_cache
from accounts.models import User
from accounts.selectors import active_user
from fiveducks import express_session, firebase, first_sight, services

FIREBASE = "firebase-id-token"
PLATFORM_SESSION = "platform-session"
# The platform's database cannot notify fivedocks of a logout: this is how long one may go unseen.
SESSION_MAX_AGE = 5.0


def firebase_user(token: str) -> User | None:
    """The active user of a Firebase ID token; None when no user can be found or imported.

    Raises firebase.InvalidToken for a token that does not verify (nothing is remembered).
    """

    def use(value: tuple[int, str]) -> User | None:
        user_id, uid = value
        user = active_user(user_id)
        # The uid moved to another account since (a verified email re-linked it): look again.
        return user if user is not None and user.firebase_uid == uid else None

    def load() -> credential_cache.Found[tuple[int, str], User] | None:
        identity = firebase.verify(token)
        found = services.user_for_firebase_identity(identity=identity)
        if found is None:
            return None
        # Read as a hit reads it (cachalot then answers the next request), active or None.
        return credential_cache.Found(
            value=(found.pk, identity.uid), result=active_user(found.pk), expires_at=identity.expires_at
        )

    return credential_cache.remembered(FIREBASE, token, use=use, load=load)


def session_user(cookie_value: str) -> User | None:
    """The active user of a `connect.sid` cookie; None when the user is unknown or inactive.

    Raises express_session.InvalidSession (bad signature; no such, an expired or an anonymous
    session) and platform_db.PlatformUnavailable.
    """
    sid = express_session.unsign(cookie_value, settings.PLATFORM_SESSION_SECRETS)

    def load() -> credential_cache.Found[int, User]:
        asked = time.time()  # the bounds run from before the read: never later than the truth
        session = express_session.session_for(sid)
        known = first_sight.find_or_import_user(user_id=session.user_id)
        return credential_cache.Found(
            value=session.user_id,
            result=active_user(known.pk) if known is not None else None,
            expires_at=asked + min(SESSION_MAX_AGE, session.expires_in),
        )

    return credential_cache.remembered(PLATFORM_SESSION, sid, use=active_user, load=load)
