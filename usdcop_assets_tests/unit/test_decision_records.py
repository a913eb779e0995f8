"""Decision records (docs/decisions/): every link to one resolves, every record is linked and well formed.

Code links a record in one line instead of carrying its figures, so a renamed or deleted record would leave
the code pointing nowhere, and a record nobody links is one no reader of the code finds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DECISIONS = ROOT / "docs" / "decisions"
RECORD_NAME = re.compile(r"^(\d{4})-[a-z0-9-]+\.md$")
# A path as code and docs write it; inside docs/decisions the records also name each other bare.
QUALIFIED = re.compile(r"docs/decisions/(\d{4}-[A-Za-z0-9._-]+?\.md)")
BARE = re.compile(r"(?<![\w/-])(\d{4}-[a-z0-9-]+\.md)")
# Where the links live: the package, its tests, benches, scripts, the dashboard and the top-level docs.
SOURCE_DIRS = ("usdcop_assets", "usdcop_assets_tests", "bench", "scripts", "streamlit_app", "docs")
SOURCE_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".json"}


def records() -> list[Path]:
    return sorted(p for p in DECISIONS.glob("*.md") if RECORD_NAME.match(p.name))


def linking_files() -> list[Path]:
    files = [p for p in ROOT.glob("*.md")]
    for name in SOURCE_DIRS:
        base = ROOT / name
        if base.is_dir():
            files.extend(
                p for p in base.rglob("*") if p.is_file() and p.suffix in SOURCE_SUFFIXES and ".venv" not in p.parts
            )
    return sorted(set(files))


def links(path: Path) -> set[str]:
    """The record file names ``path`` mentions (bare names count inside docs/decisions only)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    found = set(QUALIFIED.findall(text))
    if path.parent == DECISIONS:
        found |= set(BARE.findall(text))
    return found


def test_there_are_records_numbered_without_gaps_or_duplicates():
    numbers = [int(RECORD_NAME.match(p.name).group(1)) for p in records()]
    assert numbers, f"no decision records in {DECISIONS}"
    assert numbers == list(range(1, len(numbers) + 1)), (
        f"record numbers must run 0001.. without gaps or repeats: {numbers}"
    )


def test_every_mentioned_record_exists():
    existing = {p.name for p in records()}
    missing = {
        f"{path.relative_to(ROOT)}: {name}" for path in linking_files() for name in links(path) if name not in existing
    }
    assert not missing, "links to decision records that do not exist:\n" + "\n".join(sorted(missing))


def test_every_record_is_linked_from_code_readme_or_another_record():
    # The index lists every record by construction; a record must also be reachable from where it matters.
    index = DECISIONS / "README.md"
    linked: dict[str, set[str]] = {}
    for path in linking_files():
        if path == index:
            continue
        for name in links(path):
            if path.name != name:  # a record naming itself is no link
                linked.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    orphans = [p.name for p in records() if p.name not in linked]
    assert not orphans, f"decision records no code, README or other record links: {orphans}"


def test_the_index_lists_every_record_once():
    index = (DECISIONS / "README.md").read_text(encoding="utf-8")
    listed = re.findall(r"\]\((\d{4}-[a-z0-9-]+\.md)\)", index)
    assert sorted(listed) == [p.name for p in records()], "docs/decisions/README.md must list each record exactly once"


@pytest.mark.parametrize("record", records(), ids=lambda p: p.name)
def test_record_has_title_and_status(record: Path):
    lines = record.read_text(encoding="utf-8").splitlines()
    number = record.name[:4]
    assert lines and re.match(rf"^# {number} — \S", lines[0]), f"{record.name}: first line must be '# {number} — Title'"
    assert any(re.match(r"^Status: \S", line) for line in lines[:5]), (
        f"{record.name}: no 'Status:' line under the title"
    )
    assert any(line.startswith("## Decision") for line in lines), f"{record.name}: no '## Decision' section"
