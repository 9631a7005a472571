"""Stand-ins for the platform in tests: Firebase's certificate endpoint and the platform's database.

- `FirebaseCerts`: a local HTTP server serving `{kid: x509 certificate}` like Google's securetoken
  endpoint (with Cache-Control), and `mint()` for ID tokens signed by its own RSA key.
- `PlatformDatabase`: a PostgreSQL database of its own holding the platform's `users` table and
  connect-pg-simple's `user_sessions`, with `add_user()` and `login()` (a session row and the
  `connect.sid` cookie value express-session would send).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import quote

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt
from google.auth import jwt as google_jwt
from psycopg import sql

from fivedocks.testing import LocalHTTPServer
from fiveducks.express_session import sign


def _rsa_key_and_cert() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.system.gserviceaccount.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .sign(key, hashes.SHA256())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private, cert.public_bytes(serialization.Encoding.PEM)


class _CertsHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        stand_in = self.server.stand_in
        with stand_in.lock:
            stand_in.fetches += 1
        body = json.dumps(stand_in.certs).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header(
            "Cache-Control", f"public, max-age={stand_in.max_age}, must-revalidate, no-transform"
        )
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class FirebaseCerts(LocalHTTPServer):
    """Google's securetoken certificate endpoint, with the key that signs the tests' tokens."""

    thread_name = "firebase-certs"

    def __init__(self, *, project_id: str = "fivedocks-test", max_age: int = 3600) -> None:
        super().__init__()
        self.project_id = project_id
        self.max_age = max_age
        self.lock = threading.Lock()
        self.fetches = 0
        self.kid = uuid.uuid4().hex
        self._private, cert = _rsa_key_and_cert()
        self.certs = {self.kid: cert.decode()}

    def handler_class(self):
        return _CertsHandler

    @property
    def url(self) -> str:
        return f"{self.base_url}/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"

    def mint(
        self,
        *,
        uid: str,
        email: str | None = None,
        email_verified: bool = True,
        audience: str | None = None,
        issuer: str | None = None,
        lifetime: int = 3600,
        issued_ago: int = 0,
        private_key: bytes | None = None,
        kid: str | None = None,
        **claims,
    ) -> str:
        """A Firebase ID token (RS256, `kid` header) as the Firebase client SDK would hold it."""
        project = self.project_id
        now = int(time.time()) - issued_ago
        payload = {
            "iss": issuer or f"https://securetoken.google.com/{project}",
            "aud": audience or project,
            "auth_time": now,
            "user_id": uid,
            "sub": uid,
            "iat": now,
            "exp": now + lifetime,
            "firebase": {"sign_in_provider": "google.com", "identities": {}},
            **claims,
        }
        if email is not None:
            payload["email"] = email
            payload["email_verified"] = email_verified
        signer = crypt.RSASigner.from_string(private_key or self._private, key_id=kid or self.kid)
        return google_jwt.encode(signer, payload).decode()

    @staticmethod
    def other_key() -> bytes:
        return _rsa_key_and_cert()[0]

    def apply_to(self, settings) -> None:
        settings.FIREBASE_PROJECT_ID = self.project_id
        settings.FIREBASE_CERTS_URL = self.url


# --- the platform's database --------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE users (
    id serial PRIMARY KEY,
    username text NOT NULL,
    password text NOT NULL DEFAULT '',
    email text NOT NULL UNIQUE,
    created_at timestamp DEFAULT now(),
    is_guest boolean DEFAULT false,
    is_admin boolean DEFAULT false
);
CREATE TABLE user_sessions (
    sid varchar NOT NULL PRIMARY KEY,
    sess json NOT NULL,
    expire timestamp(6) NOT NULL
);
CREATE INDEX "IDX_session_expire" ON user_sessions (expire);
"""


class PlatformDatabase:
    """A database of its own on the tests' PostgreSQL server, dropped by `drop()`."""

    def __init__(self, django_db_settings: dict, *, secret: str | None = None) -> None:
        self._db = dict(django_db_settings)
        self.admin = {
            "user": django_db_settings.get("USER") or "postgres",
            "host": django_db_settings.get("HOST") or "127.0.0.1",
            "port": str(django_db_settings.get("PORT") or "5432"),
            "dbname": "postgres",
        }
        if django_db_settings.get("PASSWORD"):
            self.admin["password"] = django_db_settings["PASSWORD"]
        self.name = f"fd_platform_{uuid.uuid4().hex[:12]}"
        self.secret = secret or secrets.token_urlsafe(32)
        with psycopg.connect(**self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        with self.connect() as conn:
            conn.execute(_SCHEMA)

    @property
    def url(self) -> str:
        from tests.liveserver import _database_url  # a Unix-socket host goes in ?host=

        return _database_url(self._db, self.name)

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(**{**self.admin, "dbname": self.name}, autocommit=True)

    def add_user(self, *, email: str, username: str = "", user_id: int | None = None) -> int:
        """A user registered on the platform (its own id sequence unless `user_id` is given)."""
        with self.connect() as conn:
            if user_id is None:
                row = conn.execute(
                    "INSERT INTO users (username, email) VALUES (%s, %s) RETURNING id", [username, email]
                ).fetchone()
            else:
                row = conn.execute(
                    "INSERT INTO users (id, username, email) VALUES (%s, %s, %s) RETURNING id",
                    [user_id, username, email],
                ).fetchone()
        return row[0]

    def login(
        self, user_id: int, *, expires_in: dt.timedelta = dt.timedelta(days=7), secret: str | None = None
    ):
        """A logged-in session row; returns the `connect.sid` cookie value (URL-encoded)."""
        sid = secrets.token_urlsafe(24)
        expires = dt.datetime.now(dt.UTC) + expires_in
        sess = {
            "cookie": {
                "originalMaxAge": 604800000,
                "expires": expires.isoformat(),
                "secure": False,
                "httpOnly": True,
                "path": "/",
            },
            "passport": {"user": user_id},
        }
        with self.connect() as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            conn.execute(
                "INSERT INTO user_sessions (sid, sess, expire) VALUES (%s, %s, %s)",
                [sid, json.dumps(sess), expires.replace(tzinfo=None)],
            )
        return quote(sign(sid, secret or self.secret), safe="")

    def apply_to(self, settings) -> None:
        settings.PLATFORM_DATABASE_URL = self.url
        settings.PLATFORM_SESSION_SECRETS = [self.secret]

    def drop(self) -> None:
        from fiveducks import platform_db

        platform_db.close_all()
        with psycopg.connect(**self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
