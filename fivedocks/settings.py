"""fivedocks settings, read from the environment (see .env.example for every variable)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import environ

from fivedocks.config import (
    ConfigError,
    cache_from_url,
    database_from_url,
    env_bool,
    env_float,
    env_int,
    for_transaction_pooling,
    platform_session_secrets,
    replica_database,
)
from fivedocks.domains import MIRRORED_DOMAINS

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
ENV_FILE = Path(os.environ.get("ENV_FILE", BASE_DIR / ".env"))
if ENV_FILE.is_file():
    environ.Env.read_env(ENV_FILE, overwrite=False)

# The test mode: set by pytest's configuration (fivedocks/settings_test.py), never guessed.
TESTING = env_bool(env, "FIVEDOCKS_TEST_MODE", False)
DEBUG = env_bool(env, "DEBUG", False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        raise ConfigError("SECRET_KEY is required when DEBUG is off (see .env.example)")
    SECRET_KEY = "insecure-dev-only-key-never-use-in-production-0123456789abcdef"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc assets, served locally (pinned)
    "csp",
    "cachalot",
    "accounts",
    "credits",
    "billing",
    "gmail",
    "notifications",
    "kvmigrate",
    "cutover",
    "fiveducks",
    "console",
    "axes",  # admin login rate limiting (fivedocks.login_guard)
]

MIDDLEWARE = [
    "fivedocks.middleware.ObservabilityMiddleware",
    "fivedocks.middleware.LocalCacheCoherenceMiddleware",
    "fivedocks.replicas.ReadRoutingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",  # a Content-Security-Policy on every answer
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "fiveducks.middleware.GmailPopupCookieMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into the lockout answer
]

# --- Login rate limiting (django-axes): per account and client address --------------------
AUTHENTICATION_BACKENDS = [
    "fivedocks.login_guard.LoginGuardBackend",  # refuses a locked-out account+address first
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int(env, "AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int(env, "AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "fivedocks.login_guard.client_ip"
AXES_USERNAME_CALLABLE = "fivedocks.login_guard.login_name"
AXES_LOCKOUT_CALLABLE = "fivedocks.login_guard.lockout_response"
AXES_VERBOSE = False

# --- Production security (DEBUG off). Each can be overridden from the environment. ----------
_PRODUCTION = not (DEBUG or TESTING)
SECURE_PROXY_SSL_HEADER = (
    tuple(env.list("SECURE_PROXY_SSL_HEADER")) if env.str("SECURE_PROXY_SSL_HEADER", default="") else None
)
SECURE_SSL_REDIRECT = env_bool(env, "SECURE_SSL_REDIRECT", _PRODUCTION)
SECURE_HSTS_SECONDS = env_int(env, "SECURE_HSTS_SECONDS", 31536000 if _PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool(env, "SECURE_HSTS_INCLUDE_SUBDOMAINS", _PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool(env, "SECURE_HSTS_PRELOAD", _PRODUCTION)
SESSION_COOKIE_SECURE = env_bool(env, "SESSION_COOKIE_SECURE", _PRODUCTION)
CSRF_COOKIE_SECURE = env_bool(env, "CSRF_COOKIE_SECURE", _PRODUCTION)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

ROOT_URLCONF = "fivedocks.urls"
WSGI_APPLICATION = "fivedocks.wsgi.application"
ASGI_APPLICATION = "fivedocks.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: PostgreSQL only -------------------------------------------------------------
DB_POOL = env_bool(env, "DB_POOL", True)
DB_POOL_MAX = env_int(env, "DB_POOL_MAX", 20)
# Settings only read DATABASE_URL; they never start a server. `make run`, `make test` and
# `.ci/run` start the embedded PostgreSQL when it is unset (python -m fivedocks.embedded_db run).
_database_url = env.str("DATABASE_URL", default="")
if not _database_url:
    raise ConfigError(
        "DATABASE_URL is unset: set it (postgres://user@host:5432/dbname), or run through "
        "`make run` / `make test`, or prefix the command with `python -m fivedocks.embedded_db run --` "
        "(an embedded PostgreSQL in .pgdata/)"
    )
DATABASES = {"default": database_from_url(_database_url, pool=DB_POOL, pool_max=DB_POOL_MAX)}

# Scaling out (docs/scaling.md). DATABASE_URL may point at PgBouncer in transaction mode:
# DATABASE_PGBOUNCER=1 sets what that mode needs (no prepared statements, no server-side cursors
# outside transactions), and DATABASE_DIRECT_URL reaches the primary itself for what needs a
# session (advisory locks held across transactions; the cache listener's LISTEN).
DATABASE_PGBOUNCER = env_bool(env, "DATABASE_PGBOUNCER", False)
if DATABASE_PGBOUNCER:
    for_transaction_pooling(DATABASES["default"])
_direct_url = env.str("DATABASE_DIRECT_URL", default="")
if _direct_url:
    DATABASES["direct"] = database_from_url(_direct_url, pool=False, pool_max=0, name="DATABASE_DIRECT_URL")
    DATABASES["direct"]["CONN_MAX_AGE"] = 0
    DATABASES["direct"]["TEST"] = {"MIRROR": "default"}
DIRECT_DATABASE_ALIAS = "direct" if _direct_url else "default"
# Streaming replicas, read by selectors and admin lists (fivedocks/replicas.py); zero or more.
REPLICA_CONNECT_TIMEOUT = env_int(env, "REPLICA_CONNECT_TIMEOUT", 2)
DATABASE_REPLICAS: list[str] = []
for _index, _url in enumerate(env.list("DATABASE_REPLICA_URLS", default=[]), start=1):
    DATABASES[f"replica_{_index}"] = replica_database(
        _url.strip(), index=_index, connect_timeout=REPLICA_CONNECT_TIMEOUT
    )
    if DATABASE_PGBOUNCER:
        for_transaction_pooling(DATABASES[f"replica_{_index}"])
    DATABASE_REPLICAS.append(f"replica_{_index}")
if DATABASE_REPLICAS:
    DATABASE_ROUTERS = ["fivedocks.replicas.ReplicaRouter"]
# A replica later than this is skipped (its reads go to the primary).
REPLICA_MAX_LAG_SECONDS = env_float(env, "REPLICA_MAX_LAG_SECONDS", 5.0)
# A user whose data changed reads from the primary for this long (0: off).
READ_YOUR_WRITES_SECONDS = env_int(env, "READ_YOUR_WRITES_SECONDS", 10)
READ_YOUR_WRITES_CACHE = "default"
# How often each process measures each replica's lag.
REPLICA_CHECK_SECONDS = env_float(env, "REPLICA_CHECK_SECONDS", 1.0)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- Cache: local memory unless CACHE_URL says otherwise -------------------------------------
CACHES = {"default": cache_from_url(env, env.str("CACHE_URL", default="locmemcache://fivedocks"))}
# Our counting backends subclass LocMemCache/RedisCache, which cachalot supports; its check
# compares class paths literally, so it is silenced for exactly those two.
SILENCED_SYSTEM_CHECKS = (
    ["cachalot.W001"] if CACHES["default"]["BACKEND"].startswith("fivedocks.cache_backends.") else []
)
CACHALOT_ENABLED = env_bool(env, "CACHALOT_ENABLED", True)
CACHALOT_TIMEOUT = env_int(env, "CACHALOT_TIMEOUT", 300)
# Our engine is Django's PostgreSQL backend plus the cache broadcast (fivedocks/db/base.py).
CACHALOT_ADDITIONAL_SUPPORTED_DATABASES = frozenset({"fivedocks.db"})
# The primary only: cachalot's keys include the alias, so a write on the primary would never
# invalidate results cached from a replica.
CACHALOT_DATABASES = ["default"]
# Cachalot caches only the read-mostly tables; balances have their own per-user entries.
CACHALOT_ONLY_CACHABLE_TABLES = frozenset({"users", "subscriptions", "user_notifications"})
# Every committed change replaces or evicts the entry in every process (fivedocks.coherence), so
# an entry stays true as long as it lives: the TTL only bounds memory, and can be hours.
CREDITS_BALANCE_CACHE_TTL = env_int(env, "CREDITS_BALANCE_CACHE_TTL", 21600)
# Credential -> user (API tokens, ...): revocations evict it in every process, so it may live long.
AUTH_CREDENTIAL_CACHE = env_bool(env, "AUTH_CREDENTIAL_CACHE", True)
AUTH_CREDENTIAL_CACHE_TTL = env_int(env, "AUTH_CREDENTIAL_CACHE_TTL", 3600)
# Every committed change a cached entry depends on is broadcast with PostgreSQL NOTIFY and every
# serving process evicts its local copy (fivedocks/coherence.py). Needed with a per-process
# cache (local memory, the default); a shared cache (Redis) sees every change already.
CACHE_BROADCAST = env_bool(env, "CACHE_BROADCAST", CACHES["default"]["BACKEND"].endswith("LocMemCache"))
# Opt-in `X-Served-By: host:pid` response header (which worker answered; debugging, tests).
SERVED_BY_HEADER = env_bool(env, "SERVED_BY_HEADER", False)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Staff screens: numbers with thousands separators, dates as 2026-12-02 06:26 (fivedocks/formats).
USE_THOUSAND_SEPARATOR = True
FORMAT_MODULE_PATH = ["fivedocks.formats"]

STATIC_URL = "static/"
# `collectstatic` writes here; WhiteNoise serves it when DEBUG is off.
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- API --------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an anonymous caller gets 401 with `WWW-Authenticate: Token`.
        "accounts.authentication.HashedTokenAuthentication",  # keys stored as SHA-256
        "rest_framework.authentication.SessionAuthentication",
        # The 5Ducks platform's own logins (docs/platform.md): its Express session cookie
        # (`connect.sid`, which wins, as on the platform), then a Firebase ID token.
        "fiveducks.authentication.PlatformSessionAuthentication",
        "fiveducks.authentication.FirebaseAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "fivedocks.parsers.JSONParser",  # deep nesting: 400, not a RecursionError
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "fivedocks.api.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "fivedocks.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "fivedocks.schema.AutoSchema",  # documents the implied errors
    # Trusted proxies in front of the app: the client address is the one the last of them saw
    # (0: REMOTE_ADDR; never X-Forwarded-For unless a proxy is declared), so a client cannot
    # invent addresses to escape a throttle.
    "NUM_PROXIES": env_int(env, "NUM_PROXIES", 0),
    # Scoped throttles on the endpoints that move money or take outside traffic (429 + Retry-After);
    # the money paths count in Redis or PostgreSQL across workers (fivedocks.throttling).
    "DEFAULT_THROTTLE_RATES": {
        "credits-deduct": env.str("THROTTLE_DEDUCT", default="600/min"),
        "credits-grant": env.str("THROTTLE_GRANT", default="120/min"),
        "auth-token": env.str("THROTTLE_AUTH_TOKEN", default="30/min"),
        "stripe-webhook": env.str("THROTTLE_WEBHOOK", default="1200/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "fivedocks API",
    "DESCRIPTION": "Credits, subscriptions, Gmail connections and notification flags.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # The viewers' assets from drf-spectacular-sidecar (static files), not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# Schema and docs (/api/schema/, /api/docs/, /api/redoc/) for staff only (e.g. in production).
API_DOCS_STAFF_ONLY = env_bool(env, "API_DOCS_STAFF_ONLY", False)

# --- Content Security Policy (django-csp) on every page ----------------------------------
# Everything from this origin only: the admin and the API viewers need no inline scripts (the
# Swagger start-up script is a file). Inline styles stay allowed (admin widgets and the viewers
# set style attributes); images may be data: URIs (Swagger UI's icons).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- Credits: the platform's operation costs and allowances (../shared/kv-format.md) --------
CREDIT_OPERATION_COSTS = {
    "company_search": 10,
    "contact_discovery": 60,
    "email_search": 160,
    "full_search": 250,
    "company_and_contacts": 70,
    "company_contacts_emails": 240,
    "individual_email": 20,
    "individual_search": 100,
    "search_extension": 110,
}
FREE_TIER_MONTHLY_CREDITS = 250
# Staff grants and adjustments moving more credits than this wait for a second staff member's
# approval (Credits → Pending credit changes in the admin).
CREDITS_APPROVAL_THRESHOLD = env_int(env, "CREDITS_APPROVAL_THRESHOLD", 10_000)
# Credit holds (the service API): how long an unsettled hold reserves credits, and the longest
# a caller may ask for. An expired hold stops counting at once (decided in the query itself).
CREDIT_HOLD_TTL_SECONDS = env_int(env, "CREDIT_HOLD_TTL_SECONDS", 15 * 60)
CREDIT_HOLD_MAX_TTL_SECONDS = env_int(env, "CREDIT_HOLD_MAX_TTL_SECONDS", 24 * 60 * 60)
BILLING_PLANS = {
    "ugly-duckling": {
        "name": "Ugly Duckling",
        "monthly_credits": 5000,
        "stripe_price": env.str("STRIPE_PRICE_UGLY_DUCKLING", default="price_ugly_duckling"),
    },
    "duckin-awesome": {
        "name": "Duckin' Awesome",
        "monthly_credits": 15000,
        "stripe_price": env.str("STRIPE_PRICE_DUCKIN_AWESOME", default="price_duckin_awesome"),
    },
}

# --- Stripe -------------------------------------------------------------------------------
STRIPE_SECRET_KEY = env.str(
    "STRIPE_SECRET_KEY", default="sk_test_dev_placeholder" if (DEBUG or TESTING) else ""
)
STRIPE_WEBHOOK_SECRET = env.str(
    "STRIPE_WEBHOOK_SECRET", default="whsec_dev_placeholder" if (DEBUG or TESTING) else ""
)
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")  # empty: Stripe's own servers
BILLING_SUCCESS_URL = env.str("BILLING_SUCCESS_URL", default="http://127.0.0.1:8000/billing/success")
BILLING_CANCEL_URL = env.str("BILLING_CANCEL_URL", default="http://127.0.0.1:8000/billing/cancel")
BILLING_PORTAL_RETURN_URL = env.str("BILLING_PORTAL_RETURN_URL", default="http://127.0.0.1:8000/billing")
# Retries of idempotent Stripe calls on connection errors and retryable answers (the SDK's own logic).
STRIPE_MAX_NETWORK_RETRIES = env_int(env, "STRIPE_MAX_NETWORK_RETRIES", 2)
# The webhook's own body limit (DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB, does not apply to it):
# Stripe's largest events (invoices with many lines, objects with full metadata) stay far below.
STRIPE_WEBHOOK_MAX_BYTES = env_int(env, "STRIPE_WEBHOOK_MAX_BYTES", 16 * 1024 * 1024)

# --- Google / Gmail ------------------------------------------------------------------------
GOOGLE_CLIENT_ID = env.str("GOOGLE_CLIENT_ID", default="dev-client-id.apps.googleusercontent.com")
GOOGLE_CLIENT_SECRET = env.str("GOOGLE_CLIENT_SECRET", default="dev-client-secret")
GOOGLE_REDIRECT_URI = env.str("GOOGLE_REDIRECT_URI", default="http://127.0.0.1:8000/api/gmail/callback/")
GOOGLE_AUTH_URI = env.str("GOOGLE_AUTH_URI", default="https://accounts.google.com/o/oauth2/auth")
GOOGLE_TOKEN_URI = env.str("GOOGLE_TOKEN_URI", default="https://oauth2.googleapis.com/token")
GOOGLE_REVOKE_URI = env.str("GOOGLE_REVOKE_URI", default="https://oauth2.googleapis.com/revoke")
# Asked for the Gmail address only when the token answer carries no id_token; empty: never asked.
GOOGLE_USERINFO_URI = env.str(
    "GOOGLE_USERINFO_URI", default="https://openidconnect.googleapis.com/v1/userinfo"
)
GMAIL_SCOPES = [
    "https://www.googleapis.com/auth/gmail.modify",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
]
# Comma-separated Fernet keys, newest first (MultiFernet: decrypt with any, encrypt with the first).
TOKEN_ENCRYPTION_KEYS = env.list("TOKEN_ENCRYPTION_KEYS", default=[])
if not TOKEN_ENCRYPTION_KEYS and not (DEBUG or TESTING):
    raise ConfigError("TOKEN_ENCRYPTION_KEYS is required when DEBUG is off (see .env.example)")

# --- The 5Ducks platform (fiveducks/, docs/platform.md) ----------------------------------------
# Firebase ID tokens (`Authorization: Bearer`) are accepted when the project id is set.
FIREBASE_PROJECT_ID = env.str("FIREBASE_PROJECT_ID", default="")
FIREBASE_CERTS_URL = env.str(
    "FIREBASE_CERTS_URL",
    default="https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com",
)
# The platform's PostgreSQL (its `users` and session tables). Unset: session login and the
# first-sight import of platform users are off.
PLATFORM_DATABASE_URL = env.str("PLATFORM_DATABASE_URL", default="")
PLATFORM_SESSION_SECRETS = platform_session_secrets(
    env.str("PLATFORM_SESSION_SECRET", default=""), enabled=bool(PLATFORM_DATABASE_URL)
)
PLATFORM_SESSION_TABLE = env.str("PLATFORM_SESSION_TABLE", default="user_sessions")
PLATFORM_SESSION_COOKIE = env.str("PLATFORM_SESSION_COOKIE", default="connect.sid")
PLATFORM_USERS_TABLE = env.str("PLATFORM_USERS_TABLE", default="users")
PLATFORM_USERS_COLUMNS = tuple(
    env.list("PLATFORM_USERS_COLUMNS", default=["id", "email", "username", "created_at"])
)
# Credits a user imported on first sight gets once (the platform's welcome bonus).
PLATFORM_WELCOME_CREDITS = env_int(env, "PLATFORM_WELCOME_CREDITS", 250)
# The Gmail popup's redirect URI; empty: this server's own /api/gmail/callback (as the platform).
PLATFORM_GMAIL_REDIRECT_URI = env.str("PLATFORM_GMAIL_REDIRECT_URI", default="")
# Where the checkout of /api/stripe/create-checkout-session returns (the platform's pages).
PLATFORM_CHECKOUT_SUCCESS_PATH = "/subscription-success?session_id={CHECKOUT_SESSION_ID}"

# --- Cutover ------------------------------------------------------------------------------
# Domains whose API writes answer 503 (also switchable per domain in the admin).
WRITES_FROZEN = env.list("WRITES_FROZEN", default=[])
WRITES_FROZEN_RETRY_AFTER = env_int(env, "WRITES_FROZEN_RETRY_AFTER", 30)

# --- KV store (legacy Replit Database) -------------------------------------------------------
REPLIT_DB_URL = env.str("REPLIT_DB_URL", default="")
# The KV mirror: "off", "on" (every domain) or a comma-separated list of domains whose committed
# changes are written back to the KV store (through the outbox drained by `manage.py kvmirror`).
_kv_mirror = env.str("KV_MIRROR", default="off").strip().lower()
KV_MIRROR = (
    frozenset()
    if _kv_mirror in {"", "off", "0", "false", "no"}
    else frozenset(MIRRORED_DOMAINS)
    if _kv_mirror in {"on", "1", "true", "yes", "all"}
    else frozenset(part.strip() for part in _kv_mirror.split(",") if part.strip())
)
_unknown_mirror = KV_MIRROR - set(MIRRORED_DOMAINS)
if _unknown_mirror:
    raise ConfigError(f"KV_MIRROR names unknown domains: {', '.join(sorted(_unknown_mirror))}")
KV_MIRROR_TARGET = env.str("KV_MIRROR_TARGET", default="")

# --- Observability ------------------------------------------------------------------------
# /metrics answers staff users, or `Authorization: Bearer $METRICS_TOKEN` for a scraper.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

LOG_FORMAT = env.str("LOG_FORMAT", default="")  # text | json; default: json unless on a terminal
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "fivedocks.logging.RequestIdFilter"},
        "redact": {"()": "fivedocks.logging.RedactingFilter"},
    },
    "formatters": {
        "text": {"()": "fivedocks.logging.TextFormatter"},
        "json": {"()": "fivedocks.logging.JsonLinesFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id", "redact"],
            "formatter": LOG_FORMAT or __import__("fivedocks.logging").logging.formatter_name(),
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # Django's own defaults give these loggers handlers of their own (runserver's "[date] GET ..."
    # lines, a second copy of django's warnings): one handler, one format for every line instead.
    "loggers": {
        "django": {
            "handlers": ["console"],
            "level": env.str("LOG_LEVEL", default="INFO"),
            "propagate": False,
        },
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
