"""Both APIs are in the OpenAPI schema; the legacy routes with the platform's error bodies.

The fuzzing (tests/test_fuzz_api.py) runs every operation of this schema, so a legacy route
missing here would go unfuzzed.
"""

from __future__ import annotations

import pytest

from fiveducks.legacy.base import LegacyView
from fiveducks.legacy_urls import urlpatterns

pytestmark = pytest.mark.django_db

LEGACY = sorted("/" + str(p.pattern) for p in urlpatterns)


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from drf_spectacular.generators import SchemaGenerator

    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


@pytest.mark.parametrize("path", LEGACY)
def test_every_legacy_route_is_in_the_schema(schema, path):
    assert path in schema["paths"], f"{path} is not in the OpenAPI schema"


@pytest.mark.parametrize(
    "path", sorted("/" + str(p.pattern) for p in urlpatterns if issubclass(p.callback.view_class, LegacyView))
)
def test_legacy_errors_are_documented_in_the_platforms_shapes(schema, path):
    for operation in schema["paths"][path].values():
        for status, response in operation["responses"].items():
            if status in ("401", "403"):
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref.rsplit("/", 1)[-1].startswith("Legacy"), (path, status, ref)


def test_the_drf_api_keeps_its_own_paths_and_error_shape(schema):
    assert "/api/credits/" in schema["paths"] and "/api/credits" in schema["paths"]
    error = schema["paths"]["/api/credits/"]["get"]["responses"]["401"]["content"]["application/json"]
    assert error["schema"]["$ref"].endswith("/Error")
