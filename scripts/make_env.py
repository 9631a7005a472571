"""Write a development .env from .env.example with fresh secrets (used by `make run`)."""

import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet

DEV_VALUES = {
    "DEBUG": "1",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
}


def main(example: str, target: str) -> None:
    lines = []
    for line in Path(example).read_text().splitlines():
        name, sep, _ = line.partition("=")
        if sep and not line.startswith("#") and name in DEV_VALUES:
            line = f"{name}={DEV_VALUES[name]}"
        elif sep and not line.startswith("#") and not line[len(name) + 1 :].strip():
            line = f"# {line}"  # unset: the settings' own default applies
        lines.append(line)
    Path(target).write_text("\n".join(lines) + "\n")
    print(f"wrote {target} (development settings, fresh keys)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
