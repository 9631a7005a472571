"""cutover's public interface for the project package (`fivedocks`).

The import-linter contract "fivedocks imports no app's internals" (`.importlinter`) lets the
project package import an app only through that app's `public` module: what is here is what
fivedocks may rely on (the OpenAPI schema documents the 503 a frozen domain answers).
"""

from cutover.models import Domain

__all__ = ["Domain"]
