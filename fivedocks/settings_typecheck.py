"""The settings django-stubs loads for `mypy` (mypy.ini): the test settings, with a database URL
that is never connected to.

Type checking reads the models and settings; it opens no connection. Without this, `make lint`
on a fresh clone (no `.env`, DATABASE_URL unset) stopped with mypy's INTERNAL ERROR, which was
the settings refusing to start without a database.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://typecheck@127.0.0.1:9/never-connected")

from fivedocks.settings_test import *  # noqa: F403
