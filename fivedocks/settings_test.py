"""The settings of the test run (pytest.ini: `DJANGO_SETTINGS_MODULE = fivedocks.settings_test`).

The test mode is explicit: this module switches it on (`FIVEDOCKS_TEST_MODE=1`) before reading
the real settings, which then start without production secrets (SECRET_KEY, the token
encryption keys and Stripe's keys get test placeholders) and use the test cache. Being an
environment variable, the mode reaches the commands the tests run as subprocesses too; the live
gunicorn servers (`tests/liveserver.py`) and the benchmarks drop it to run as production does.
"""

import os

os.environ["FIVEDOCKS_TEST_MODE"] = "1"

from fivedocks.settings import *  # noqa: F403
