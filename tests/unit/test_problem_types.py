"""Every problem type the code can answer with is documented in docs/problems.md, and
that is what its ``type`` URI serves."""

from __future__ import annotations

import ast
from pathlib import Path

from servoscope.problems import CATALOGUE, HTTP_ERROR_TYPES, catalogue_entry
from servoscope.settings import REPO_ROOT

SOURCES = ["gateway", "services", "servoscope"]
# Types whose slug is computed, not written at the call: the gateway's attempt failures.
COMPUTED = {"upstream-timeout", "upstream-unreachable"}


def raised_types() -> set[str]:
    """The slug of every ``Problem(...)`` in the code (or its title's, when it has none)."""
    found: set[str] = set()
    for folder in SOURCES:
        for path in (REPO_ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call) or getattr(node.func, "id", "") != "Problem":
                    continue
                slug = next((k.value for k in node.keywords if k.arg == "slug"), None)
                if isinstance(slug, ast.Constant):
                    found.add(slug.value)
                elif slug is None and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                    found.add(node.args[1].value.lower().replace(" ", "-"))
    return found | set(HTTP_ERROR_TYPES.values()) | COMPUTED


def test_every_problem_type_has_its_entry() -> None:
    types = raised_types()
    assert len(types) > 30
    missing = sorted(slug for slug in types if catalogue_entry(slug) is None)
    assert not missing, f"document these in {CATALOGUE.relative_to(REPO_ROOT)}: {missing}"


def test_an_entry_is_its_own_section() -> None:
    entry = catalogue_entry("breaker-open")
    assert entry is not None
    assert entry.startswith("## breaker-open\n")
    assert "Retry-After" in entry
    assert "## bulkhead-full" not in entry
    assert catalogue_entry("no-such-type") is None
    assert Path(CATALOGUE).name == "problems.md"
