from accounts.models import User


def user_by_firebase_uid(*, firebase_uid: str) -> User | None:
    return User.objects.filter(firebase_uid=firebase_uid).first()


def user_for_api_token(*, key: str) -> User | None:
    """The active user owning this API key, or None. The one lookup by a key's hash: a cache of
    token -> user belongs here, keyed by the same hash (never the key itself)."""
    from accounts.models import ApiToken
    from accounts.tokens import hash_key

    token = ApiToken.objects.select_related("user").filter(key_hash=hash_key(key)).first()
    if token is None or not token.user.is_active:
        return None
    return token.user
