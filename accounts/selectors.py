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

    def load() -> credential_cache.Found[int, User] | None:
        user_id = ApiToken.objects.filter(key_hash=digest).values_list("user_id", flat=True).first()
        if user_id is None:
            return None
        return credential_cache.Found(value=user_id, result=active_user(user_id))

    return credential_cache.remembered(TOKEN, digest, use=active_user, load=load)


def active_user(user_id: int) -> User | None:
    """The user behind a remembered credential, if still active. Always the same query, so
    cachalot's cached answer serves the next request, and a deactivation (a write to `users`,
    broadcast to every worker) is seen on the next one."""
    return User.objects.filter(pk=user_id, is_active=True).first()
