#!/usr/bin/env python
"""Django's command-line utility for fivedocks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fivedocks.settings")
    from fivedocks.config import ConfigError, database_unreachable, needs_database

    try:
        # Import the settings first so a bad setting is one readable line, not a traceback.
        settings = __import__(os.environ["DJANGO_SETTINGS_MODULE"], fromlist=["DATABASES"])
    except ConfigError as exc:
        sys.stderr.write(f"fivedocks: configuration error: {exc}\n")
        sys.exit(2)
    if needs_database(sys.argv):
        # A dead or refusing database: one line within seconds, not a traceback after the pool's wait.
        problem = database_unreachable(settings.DATABASES["default"])
        if problem:
            sys.stderr.write(f"fivedocks: {problem}\n")
            sys.exit(1)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
