"""A Content Security Policy on every page; API docs served locally; docs restrictable to staff."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

pytestmark = pytest.mark.django_db


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


@pytest.mark.parametrize(
    "path", ["/admin/login/", "/api/me/", "/healthz", "/api/docs/", "/api/redoc/", "/api/schema/", "/nowhere"]
)
def test_a_csp_header_is_on_every_page(path):
    response = Client().get(path)
    policy = _policy(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no inline or remote scripts
    assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"]


def test_the_docs_pages_load_only_local_pinned_assets_and_no_inline_script():
    client = Client()
    for path in ("/api/docs/", "/api/redoc/"):
        page = client.get(path).content.decode()
        assets = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert assets, page
        for url in assets:
            assert url.startswith("/"), f"{path} loads {url} from elsewhere"
            assert "@latest" not in url and "cdn" not in url
        # Every <script> has a src: nothing inline for the CSP to refuse.
        assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", page)), page
        for url in assets:
            if url.startswith("/static/"):  # shipped by the pinned sidecar package
                assert finders.find(url.removeprefix("/static/")), url
    script = re.search(r'<script src="(/api/docs/\?[^"]+)"', client.get("/api/docs/").content.decode())
    assert script and client.get(script.group(1).replace("&amp;", "&")).status_code == 200


def test_schema_and_docs_can_be_restricted_to_staff(settings, user, staff_user):
    settings.API_DOCS_STAFF_ONLY = True
    for path in ("/api/schema/", "/api/docs/", "/api/redoc/"):
        assert Client().get(path).status_code == 401, path
        member = Client()
        member.force_login(user)
        assert member.get(path).status_code == 403, path
        staff = Client()
        staff.force_login(staff_user)
        assert staff.get(path).status_code == 200, path
    settings.API_DOCS_STAFF_ONLY = False
    assert Client().get("/api/schema/").status_code == 200
