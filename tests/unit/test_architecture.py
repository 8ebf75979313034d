"""Dependencies point down only: receiver → spooler, tailer → spooler, spoolship → both.

spooler is standard library only; receiver and tailer never import each other.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "spooler": {"receiver", "tailer", "spoolship"},
    "receiver": {"tailer", "spoolship"},
    "tailer": {"receiver", "spoolship"},
}


def imported_top_level(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def test_parts_do_not_import_upward_or_sideways():
    for package, forbidden in FORBIDDEN.items():
        imports = imported_top_level(package)
        bad = {name: files for name, files in imports.items() if name in forbidden}
        assert not bad, f"{package} imports {bad}"


def test_spooler_uses_the_standard_library_only():
    imports = imported_top_level("spooler")
    third_party = {name for name in imports if name not in sys.stdlib_module_names and name != "spooler"}
    assert not third_party, third_party
