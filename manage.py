#!/usr/bin/env python
"""Django's command-line utility for fivedocks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fivedocks.settings")
    from fivedocks.config import ConfigError

    try:
        # Import the settings first so a bad setting is one readable line, not a traceback.
        __import__(os.environ["DJANGO_SETTINGS_MODULE"])
    except ConfigError as exc:
        sys.stderr.write(f"fivedocks: configuration error: {exc}\n")
        sys.exit(2)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
