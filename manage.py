#!/usr/bin/env python
"""Django's command-line utility for fivedocks."""

import gc
import os
import sys


def _pause_gc_until_setup() -> None:
    """No cyclic GC while Django and the apps are imported; what they built is then frozen.

    Start-up builds a few hundred thousand long-lived objects (modules, classes, functions), and the
    cyclic GC walked them all several times meanwhile, and once more at exit: 0.2 to 0.4 s of every
    command, `kvmigrate`'s delta run in the cutover's freeze window included. Frozen objects are
    never walked again; the GC runs as usual on what the command itself allocates.
    """
    import django

    setup = django.setup

    def setup_then_freeze(*args, **kwargs):
        try:
            return setup(*args, **kwargs)
        finally:
            gc.freeze()
            gc.enable()

    django.setup = setup_then_freeze
    gc.disable()


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fivedocks.settings")
    _pause_gc_until_setup()
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

    try:
        execute_from_command_line(sys.argv)
    finally:
        gc.freeze()  # the interpreter's teardown need not walk every object once more


if __name__ == "__main__":
    main()
