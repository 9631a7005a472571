"""The dependency rules (`.importlinter`, docs/architecture.md) fail the build when broken.

Each case copies the apps to a temporary directory, adds one forbidden import and runs
`lint-imports` (what `make lint` and `.ci/run` run) on the copy: it must fail and name the
contract. The clean tree must pass.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "accounts",
    "credits",
    "billing",
    "gmail",
    "notifications",
    "kvmigrate",
    "cutover",
    "fiveducks",
    "fivedocks",
)
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _copy_tree(dest: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", dest / ".importlinter")
    return dest


def _lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", ".importlinter"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_every_contract(tmp_path):
    result = _lint(_copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("gmail/services.py", "import kvmigrate\n", "Domains never import kvmigrate, cutover or fiveducks"),
        ("accounts/models.py", "from cutover import models as _m\n", "Domains never import kvmigrate"),
        ("notifications/selectors.py", "import fiveducks.first_sight\n", "Domains never import kvmigrate"),
        (
            "credits/services.py",
            "\n\ndef _hidden():\n    import billing.models\n\n    return billing.models\n",
            "credits never imports billing",
        ),
        (
            "accounts/selectors.py",
            "\n\ndef _hidden():\n    from credits import models\n",
            "accounts imports no domain",
        ),
        (
            "fivedocks/api.py",
            "\n\ndef _hidden():\n    from credits.services import grant\n",
            "fivedocks (the project",
        ),
    ],
)
def test_a_forbidden_import_breaks_the_build(tmp_path, module, line, contract):
    tree = _copy_tree(tmp_path)
    with open(tree / module, "a") as f:
        f.write(line)
    result = _lint(tree)
    assert result.returncode != 0, result.stdout
    broken = [row for row in result.stdout.splitlines() if row.endswith("BROKEN") or "BROKEN (" in row]
    assert any(row.startswith(contract) for row in broken), result.stdout
