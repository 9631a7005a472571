"""The 5Ducks client's own routes, mounted at the site root.

Exact paths and camelCase shapes of `../shared/platform-api.md`; paths are answered as the client
writes them (no trailing-slash redirect). Views here only shape answers; the behaviour lives in the
domains' services and selectors.
"""

from __future__ import annotations

urlpatterns: list = []
