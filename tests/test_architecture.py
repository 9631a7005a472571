"""The dependency rules (`.importlinter`, docs/architecture.md) fail the build when broken.

Each case copies the apps to a temporary directory, adds one forbidden import and runs
`lint-imports` (what `make lint` and `.ci/run` run) on the copy: it must fail and name the
contract. The clean tree must pass.
"""

from __future__ import annotations

import ast
import re
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


# --- each domain owns its writes: kvmigrate's SQL names none of their tables ------------------

# The apps whose tables kvmigrate reaches only through their services and selectors.
OWNED_BY_DOMAINS = ("accounts", "billing", "gmail", "notifications")
SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|JOIN|INTO|COPY|ANALYZE|TRUNCATE|TABLE)\b")


def _domain_tables() -> set[str]:
    from django.apps import apps

    return {
        model._meta.db_table
        for label in OWNED_BY_DOMAINS
        for model in apps.get_app_config(label).get_models()
    }


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def sql_naming_tables(source: str, tables: set[str]) -> list[tuple[int, str]]:
    """(line, table) for every SQL string literal (f-strings: their literal parts) naming a table."""
    tree = ast.parse(source)
    skip = _docstrings(tree)  # and the parts of f-strings, read with their f-string
    skip |= {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(
                v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
            )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value
        else:
            continue
        if SQL_WORDS.search(text):
            hits += [(node.lineno, table) for table in tables if re.search(rf"\b{re.escape(table)}\b", text)]
    return hits


def test_the_scan_finds_a_table_named_in_sql():
    tables = {"users", "subscriptions"}
    source = (
        'A = "SELECT id FROM users WHERE id = ANY(%s)"\n'
        'B = f"UPDATE {x} SET a = 1 FROM subscriptions s"\n'
        'C = "users"  # a name, not SQL\n'
        'def f():\n    """Reads users FROM the table."""\n'
    )
    assert sorted(sql_naming_tables(source, tables)) == [(1, "users"), (2, "subscriptions")]


def test_kvmigrate_sql_names_no_table_of_the_domains_that_own_their_writes():
    tables = _domain_tables()
    assert {"users", "subscriptions", "gmail_tokens", "user_notifications"} <= tables
    found = [
        f"{path.relative_to(ROOT)}:{line}: {table}"
        for path in sorted((ROOT / "kvmigrate").rglob("*.py"))
        if "tests" not in path.relative_to(ROOT).parts  # tests set up data across apps (as in .importlinter)
        for line, table in sql_naming_tables(path.read_text(encoding="utf-8"), tables)
    ]
    assert not found, (
        "kvmigrate names these apps' tables in SQL (use their services/selectors):\n" + "\n".join(found)
    )
