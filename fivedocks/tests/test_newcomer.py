"""A newcomer's first hour: what `make run` prints, what a mistake looks like, one log format."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client

from accounts.models import ApiToken, User
from accounts.services import issue_api_token
from accounts.tokens import hash_key
from billing.models import Subscription
from credits.models import CreditAccount, CreditTransaction
from fivedocks.config import PROBE_TIMEOUT, database_from_url, database_unreachable, database_url

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "ENV_FILE": "/nonexistent", "DEBUG": "1", **extra}


def _manage(*args: str, env: dict[str, str], timeout: int = 60) -> subprocess.CompletedProcess:
    args = [sys.executable, "manage.py", *args]
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# --- the default path: settings read DATABASE_URL, never start a database -----------------------
def test_settings_without_database_url_say_so_and_start_nothing(tmp_path):
    pgdata = tmp_path / "pgdata"
    result = _manage("migrate", env=_env(EMBEDDED_PGDATA=str(pgdata)))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "DATABASE_URL is unset" in lines[0], result.stderr
    assert "make test" in lines[0]
    assert not pgdata.exists(), "importing the settings started (or created) a database"


def test_a_socket_url_keeps_the_folder_in_host_both_ways():
    url = "postgres://postgres@:5432/fivedocks?host=%2Fsrv%2Fapp%2F.pgdata"
    config = database_from_url(url, pool=False, pool_max=1)
    assert config["HOST"] == "/srv/app/.pgdata" and "host" not in config["OPTIONS"]
    assert database_url(config) == url
    assert database_url(config, "other").startswith("postgres://postgres@:5432/other?host=")
    tcp = database_from_url("postgres://u:p%40ss@db.example:6543/x", pool=False, pool_max=1)
    assert database_url(tcp) == "postgres://u:p%40ss@db.example:6543/x"


# --- make run speaks true -----------------------------------------------------------------------
def test_make_run_passes_host_and_port_to_what_it_prints_and_serves():
    result = subprocess.run(
        ["make", "-n", "run", "HOST=127.0.0.1", "PORT=8765"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PATH": f"{ROOT / '.venv/bin'}:/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "demo_setup --url http://127.0.0.1:8765" in result.stdout
    assert "runserver 127.0.0.1:8765" in result.stdout
    assert "8000" not in result.stdout


@pytest.mark.django_db(transaction=True)
def test_demo_setup_prints_the_address_and_gives_credits_and_a_current_subscription():
    from io import StringIO

    from django.core.management import call_command

    call_command("demo_setup", "--url", "http://127.0.0.1:8765", stdout=StringIO())
    out = StringIO()
    call_command("demo_setup", "--url", "http://127.0.0.1:8765", stdout=out)  # a re-run adds nothing
    printed = out.getvalue()
    assert "http://127.0.0.1:8000" not in printed
    assert "http://127.0.0.1:8765/admin/" in printed

    staff = User.objects.get(email="staff@fivedocks.local")
    curl = next(line.strip() for line in printed.splitlines() if "/api/credits/deduct/" in line)
    token = re.match(r"curl -H 'Authorization: Token ([0-9a-f]{40})'", curl).group(1)
    assert ApiToken.objects.get(user=staff).key_hash == hash_key(token)  # the key printed is the live one
    # Starting credits through the credit service: a ledger row explains the balance.
    account = CreditAccount.objects.get(user=staff)
    assert account.balance >= 250  # the costliest operation the curl line could name
    rows = CreditTransaction.objects.filter(user=staff)
    assert rows.count() == 1 and rows.get().balance_after == account.balance

    customer = User.objects.get(email="customer@fivedocks.local")
    subscription = Subscription.objects.get(user=customer)
    from django.utils import timezone

    assert subscription.status == "active"
    assert subscription.current_period_start <= timezone.now() < subscription.current_period_end
    assert CreditAccount.objects.get(user=customer).balance > 100

    # The printed curl line works: the demo user's first deduction is not a 402.
    body = re.search(r"-d '([^']+)'", curl).group(1)
    response = Client().post(
        "/api/credits/deduct/", body, content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}"
    )
    assert response.status_code == 200, response.content


# --- errors a newcomer can read -----------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _db_url(host: str, port: int) -> str:
    return f"postgres://postgres@{host}:{port}/fivedocks"


def test_a_refusing_database_is_one_line_naming_host_port_and_cause():
    port = _free_port()
    started = time.monotonic()
    result = _manage("migrate", env=_env(DATABASE_URL=_db_url("127.0.0.1", port)))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "Connection refused" in lines[0], lines[0]
    assert time.monotonic() - started < 10


@contextlib.contextmanager
def _silent_server():
    """A host that takes the TCP connection and never answers (a firewall, a hung server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for sock in held:
            sock.close()
        listener.close()


def test_an_unanswering_database_is_found_out_in_about_three_seconds():
    """The probe itself (no interpreter start-up in the figure): libpq's 3 s, not the pool's 10 s."""
    with _silent_server() as port:
        started = time.monotonic()
        problem = database_unreachable({"HOST": "127.0.0.1", "PORT": port, "USER": "postgres", "NAME": "fd"})
        elapsed = time.monotonic() - started
    assert problem == f"cannot reach the database 'fd' at 127.0.0.1:{port}: connection timeout expired"
    assert 2.5 <= elapsed < PROBE_TIMEOUT + 2, elapsed


def test_manage_py_with_an_unanswering_database_says_so_in_one_line():
    with _silent_server() as port:
        result = _manage("migrate", env=_env(DATABASE_URL=_db_url("127.0.0.1", port)))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"fivedocks: cannot reach the database 'fivedocks' at 127.0.0.1:{port}: connection timeout expired"
    ]


def test_a_missing_database_names_it():
    db = connection.settings_dict
    url = database_url(db, "fd_no_such_database")
    result = _manage("migrate", env=_env(DATABASE_URL=url))
    assert result.returncode == 1
    assert 'database "fd_no_such_database" does not exist' in result.stderr.strip()
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False])
def test_unknown_api_urls_answer_the_json_404_whatever_debug(settings, debug, user):
    settings.DEBUG = debug
    client = Client()
    for path in ("/api/nope/", "/api/credits/nope/", "/api/", "/api/nope"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response["Content-Type"] == "application/json", path
        assert response.json() == {"status": 404, "code": "not_found", "detail": "Not found."}
    # A POST to a real endpoint without its slash: told so, in JSON (not the CSRF page, not a 500).
    response = client.post("/api/credits/deduct", {"operation": "company_search"})
    assert response.status_code == 404 and "/api/credits/deduct/" in response.json()["detail"]
    # A GET without the slash is still redirected to the real endpoint (`/api/credits` itself
    # is the platform client's own route, answered as written).
    response = client.get("/api/credits/transactions?type=bonus")
    assert response.status_code == 301 and response["Location"] == "/api/credits/transactions/?type=bonus"
    # Outside /api/ the site's own pages stay HTML.
    assert not client.get("/nope/")["Content-Type"].startswith("application/json")
    # A wrong method is the JSON 405.
    token = issue_api_token(user=user)
    response = client.delete("/api/credits/", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


# --- one log format -----------------------------------------------------------------------------
_LOG_SCRIPT = (
    "import logging; "
    "logging.getLogger('django.server').info('\"GET /x HTTP/1.1\" 200 2'); "
    "logging.getLogger('django.request').warning('Not Found: /y'); "
    "logging.getLogger('fivedocks').warning('ours')"
)


def _log_lines(*, terminal: bool) -> list[str]:
    env = _env(DATABASE_URL=database_url(connection.settings_dict), LOG_FORMAT="")
    args = [sys.executable, "manage.py", "shell", "-c", _LOG_SCRIPT]
    if not terminal:
        result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        return [line for line in result.stderr.splitlines() if line.strip()]
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=follower)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=60)
    finally:
        os.close(leader)
    return [line for line in b"".join(chunks).decode().splitlines() if line.strip()]


@pytest.mark.django_db
def test_on_a_terminal_every_log_line_is_text():
    lines = _log_lines(terminal=True)
    assert len(lines) == 3, lines
    text = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) [\w.]+ \[[^\]]*\] ")
    assert all(text.match(line) for line in lines), lines


@pytest.mark.django_db
def test_off_a_terminal_every_log_line_is_json():
    lines = _log_lines(terminal=False)
    assert len(lines) == 3, lines
    records = [json.loads(line) for line in lines]
    assert {r["logger"] for r in records} == {"django.server", "django.request", "fivedocks"}


def test_commands_that_never_touch_the_database_are_not_held_up_by_it():
    from fivedocks.config import needs_database

    assert needs_database(["manage.py", "migrate"]) and needs_database(["manage.py", "runserver"])
    for argv in (["manage.py"], ["manage.py", "help"], ["manage.py", "kvgen"], ["manage.py", "smoke"],
                 ["manage.py", "migrate", "--help"], ["manage.py", "collectstatic"]):  # fmt: skip
        assert not needs_database(argv), argv
    result = _manage("kvgen", "--help", env=_env(DATABASE_URL=_db_url("127.0.0.1", _free_port())))
    assert result.returncode == 0 and "--users" in result.stdout
