from accounts import credential_cache
from accounts.models import ApiToken, User
from accounts.tokens import hash_key

TOKEN = "api-token"  # the credential cache's kind for API tokens


def user_by_firebase_uid(*, firebase_uid: str) -> User | None:
    return User.objects.filter(firebase_uid=firebase_uid).first()


def user_for_api_token(*, key: str) -> User | None:
    """The active user owning this API key, or None. The one lookup by a key's hash; warm, it
    runs no query (`accounts.credential_cache`: key hash -> user id, the user through cachalot)."""
    digest = hash_key(key)
    user_id = credential_cache.lookup(TOKEN, digest)
    if user_id is not None:
        user = _active_user(user_id)
        if user is not None:
            return user
    fill = credential_cache.fill_token(TOKEN, digest)
    user_id = ApiToken.objects.filter(key_hash=digest).values_list("user_id", flat=True).first()
    user = _active_user(user_id) if user_id is not None else None
    if user is not None:
        credential_cache.fill(TOKEN, digest, user_id, fill)
    return user


def _active_user(user_id: int) -> User | None:
    # The same query on every path, so cachalot's cached answer serves the next request.
    return User.objects.filter(pk=user_id, is_active=True).first()
