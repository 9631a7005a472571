"""The fast first try of each GET: what it leaves to urllib3, and that nothing is asked twice."""

import gzip
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote

import pytest

from kvmigrate.sources import ReplitSource, SourceError
from kvmigrate.sources.replit_gets import FastGets, Miss

VALUES = {f"k{i}": f"value {i} é" for i in range(30)}


class _Odd(BaseHTTPRequestHandler):
    """A Replit-like server answering in ways a client may not foresee: chunked bodies, HTTP/1.0
    closing the connection after each answer, gzip bodies nobody asked for, or a head with both a
    Content-Length and chunked framing (which llhttp refuses and http.client reads)."""

    kind = "chunked"
    requests = 0
    lock = threading.Lock()

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        with self.lock:
            type(self).requests += 1
        path, _, query = self.path.partition("?")
        if query:
            body = "\n".join(quote(k, safe="") for k in VALUES).encode()
        else:
            value = VALUES.get(unquote(path.rsplit("/", 1)[1]))
            if value is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = value.encode()
        self.send_response(200)
        if self.kind == "gzip":
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
        if self.kind in ("chunked", "length and chunked"):
            if self.kind == "length and chunked":
                self.send_header("Content-Length", str(len(body)))
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture(params=["chunked", "http/1.0", "gzip", "length and chunked"])
def odd_server(request):
    handler = type(
        "Handler",
        (_Odd,),
        {
            "kind": request.param,
            "protocol_version": "HTTP/1.0" if request.param == "http/1.0" else "HTTP/1.1",
            "requests": 0,
        },
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v0/token", handler, request.param
    server.shutdown()
    server.server_close()


def test_odd_answers_are_read_by_aiohttp_or_handed_to_urllib3_and_a_closed_connection_is_reopened(
    odd_server, fast_retries
):
    url, handler, kind = odd_server
    source = ReplitSource(url, policy=fast_retries, concurrency=4)
    seen = dict(item for batch in source.iter_batches(7) for item in batch)
    assert seen == VALUES
    assert source.counters.snapshot() == {"listed": 30, "fetched": 30, "vanished": 0, "retries": 0}
    asked = handler.requests - 1  # the listing
    if kind in ("gzip", "length and chunked"):
        # the first such answer (a body to decompress, a head llhttp refuses) turns the fast reader
        # off; each key it had asked is asked again by urllib3, which reads it
        assert 30 < asked <= 30 + 4
    else:
        assert asked == 30  # chunked: llhttp reads it; HTTP/1.0: a new connection per GET


def test_get_many_and_missing_keys(odd_server, fast_retries):
    url, _, _ = odd_server
    source = ReplitSource(url, policy=fast_retries, concurrency=3)
    assert source.get_many(["k1", "nope", "k2", "k1"]) == {"k1": VALUES["k1"], "k2": VALUES["k2"]}
    assert source.counters["vanished"] == 1


def _tls_files(folder):
    """A CA and a certificate for 127.0.0.1 it signed (PEM files): (ca, cert, key)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    since, until = now - dt.timedelta(days=1), now + dt.timedelta(days=1)
    usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)  # signs certs
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kvmigrate test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(1).not_valid_before(since).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(since).not_valid_after(until)
        .add_extension(san, critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def test_https_with_the_certificate_checked(tmp_path, monkeypatch, fast_retries):
    """Replit's databases are https: the fast reader speaks TLS and checks the certificate as
    urllib3 does (the system's trust store; here a test CA through SSL_CERT_FILE)."""
    import ssl

    from kvmigrate.replit_server import ReplitDBServer

    ca, cert, key = _tls_files(tmp_path)
    server = ReplitDBServer(limits=False)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.start()
    try:
        server.store.set_many(list(VALUES.items()))
        url = server.url.replace("http://", "https://")
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        source = ReplitSource(url, policy=fast_retries, concurrency=4)
        before = server.requests
        assert dict(item for batch in source.iter_batches(8) for item in batch) == VALUES
        assert server.requests - before == len(VALUES) + 1  # the listing, then one GET each: no fallback
        assert source.counters["retries"] == 0
        # Without the CA the certificate is refused: by the fast reader, then by urllib3.
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
        fast = FastGets(concurrency=2, connect_timeout=5, read_timeout=5)
        try:
            assert fast.submit(url, ["k1"]).result() == [Miss(error="connection")]
        finally:
            fast.close()
        with pytest.raises(SourceError):
            list(ReplitSource(url, policy=fast_retries).iter_batches())
    finally:
        server.stop()


def test_a_policy_of_one_try_is_one_request(replit_server):
    """The fast reader's try is the policy's first: with one try, a failing key is asked once."""
    from kvmigrate.sources import RetryPolicy

    replit_server.store.set_many([("k", "v")])
    source = ReplitSource(replit_server.url, policy=RetryPolicy(tries=1))
    keys = source.list_keys()
    replit_server.faults.fail_every = 1
    replit_server.faults.fail_status = 503
    before = replit_server.requests
    with pytest.raises(SourceError, match=r"gave up after 1 tries \(HTTP 503\)"):
        source.get_many(keys)
    assert replit_server.requests - before == 1


@pytest.fixture
def dropping_server():
    """A server that reads each request and closes the connection without an answer: (url, asked)."""
    listener = socket.create_server(("127.0.0.1", 0))
    asked: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                if request:
                    asked.append(request)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v0/token", asked
    listener.close()


@pytest.mark.parametrize("tries", [1, 3])
def test_a_dropped_connection_is_one_try_of_the_policy(dropping_server, tries):
    """aiohttp would send a GET whose connection dropped a second time on its own: not here, the
    policy counts every request."""
    from kvmigrate.sources import RetryPolicy

    url, asked = dropping_server
    source = ReplitSource(url, policy=RetryPolicy(tries=tries, backoff=0.001, max_backoff=0.002))
    with pytest.raises(SourceError, match=rf"gave up after {tries} tries \(connection failed\)"):
        source.get_many(["some/key"])
    assert len(asked) == tries
    assert all(request.startswith(b"GET /v0/token/some%2Fkey HTTP/1.1\r\n") for request in asked)
