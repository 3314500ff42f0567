"""The docs point somewhere and keep up with the code: README.md and docs/*.md, read as GitHub renders them.

A relative link must name a file of the repository, an anchor (``#section``) a heading of its page by
GitHub's slug rules, a ``make <target>`` a target of the Makefile; the Variable's table must list every
key of the configuration, and the DAG's ``doc_md`` must stay short and point to the operator's page.
Fast and offline: it reads files and starts nothing (no Airflow, no network).
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

from fruits_airflow.config import PipelineConfig
from tests.suite import DAGS_DIR, REPO_ROOT

DOCS_DIR = REPO_ROOT / "docs"
DOC_FILES = [REPO_ROOT / "README.md", *sorted(DOCS_DIR.glob("*.md"))]
README_MAX_LINES = 200
DAG_DOC_MAX_LINES = 40
VARIABLE_SECTION = (DOCS_DIR / "aws.md", "the-variable-fruits_pipeline")

FENCED_BLOCK = re.compile(r"^ {0,3}(```|~~~)[^\n]*\n.*?^ {0,3}\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]+`")
# [text](target) and ![alt](target), the target optionally in <...> and followed by a "title".
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$", re.MULTILINE)
EXTERNAL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")
MAKE_COMMAND = re.compile(r"(?<![\w/.-])make[ \t]+([a-z][\w-]*)")
MAKEFILE_RULE = re.compile(r"^([A-Za-z0-9][\w.-]*(?:[ \t]+[A-Za-z0-9][\w.-]*)*)[ \t]*:(?!=)", re.MULTILINE)
# A page named in the DAG's docstring, which the Airflow UI shows without resolving relative links.
DOC_REFERENCE = re.compile(r"`(docs/[\w.-]+\.md(?:#[\w-]+)?)`")


def without_code(markdown: str) -> str:
    """The text GitHub reads links and headings from: no fenced blocks, no inline code."""
    return INLINE_CODE.sub("", FENCED_BLOCK.sub("", markdown))


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lower-cased, punctuation dropped, spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading's anchor; GitHub suffixes a repeated one with -1, -2, ..."""
    seen: Counter[str] = Counter()
    found = set()
    for _, heading in HEADING.findall(FENCED_BLOCK.sub("", markdown)):
        slug = github_slug(heading)
        found.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return found


def broken_target(source: Path, target: str, root: Path = REPO_ROOT, base: Path | None = None) -> str | None:
    """Why a relative link of ``source`` points nowhere, or None when it resolves.

    :param root: the repository: a target outside it points nowhere.
    :param base: the folder a target is relative to; the page's own by default.
    """
    path_part, _, anchor = unquote(target).partition("#")
    destination = ((base or source.parent) / path_part).resolve() if path_part else source
    if not destination.is_relative_to(root) or not destination.exists():
        return f"{source.name}: {target}: no such file"
    if anchor and destination.suffix == ".md" and anchor not in anchors(destination.read_text()):
        return f"{source.name}: {target}: no heading #{anchor} in {destination.relative_to(root)}"
    return None


def broken_links(source: Path, root: Path = REPO_ROOT) -> list[str]:
    """The relative links and anchors of a Markdown page that point nowhere."""
    targets = LINK.findall(without_code(source.read_text()))
    problems = (broken_target(source, target, root) for target in targets if target and not EXTERNAL.match(target))
    return [problem for problem in problems if problem]


def make_commands(markdown: str) -> set[str]:
    """The targets of the ``make <target>`` commands written as code: fenced blocks and inline code."""
    code = [block.group(0) for block in FENCED_BLOCK.finditer(markdown)]
    code += [span.group(0) for span in INLINE_CODE.finditer(FENCED_BLOCK.sub("", markdown))]
    return {target for snippet in code for target in MAKE_COMMAND.findall(snippet)}


def makefile_targets() -> set[str]:
    rules = MAKEFILE_RULE.findall((REPO_ROOT / "Makefile").read_text())
    return {target for rule in rules for target in rule.split()}


def section(markdown: str, slug: str) -> str:
    """The text under the heading whose anchor is ``slug``, up to the next heading of its level or higher."""
    headings = list(HEADING.finditer(markdown))
    for index, heading in enumerate(headings):
        if github_slug(heading.group(2)) == slug:
            level = len(heading.group(1))
            ends = [h.start() for h in headings[index + 1 :] if len(h.group(1)) <= level]
            return markdown[heading.end() : ends[0] if ends else len(markdown)]
    raise AssertionError(f"no heading #{slug}")


def dag_doc() -> str:
    docstring = ast.get_docstring(ast.parse((DAGS_DIR / "fruits_pipeline.py").read_text()))
    assert docstring, "dags/fruits_pipeline.py has no module docstring (its doc_md)"
    return docstring


@pytest.mark.parametrize("page", DOC_FILES, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_every_relative_link_and_anchor_points_somewhere(page: Path) -> None:
    assert broken_links(page) == []


@pytest.mark.parametrize("page", DOC_FILES, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_every_make_target_named_exists_in_the_makefile(page: Path) -> None:
    assert make_commands(page.read_text()) - makefile_targets() == set()


def test_the_docs_have_one_page_per_reader() -> None:
    assert {path.name for path in DOCS_DIR.glob("*.md")} >= {
        "aws.md",
        "development.md",
        "architecture.md",
        "performance.md",
    }


def test_the_readme_is_read_in_ten_minutes() -> None:
    assert len((REPO_ROOT / "README.md").read_text().splitlines()) <= README_MAX_LINES


def test_the_variable_table_lists_every_configuration_key() -> None:
    page, slug = VARIABLE_SECTION
    table = section(page.read_text(), slug)

    assert [key for key in PipelineConfig.__dataclass_fields__ if f"`{key}`" not in table] == []


def test_the_dag_doc_is_short_and_points_to_the_operators_page() -> None:
    dag_file = DAGS_DIR / "fruits_pipeline.py"
    doc = dag_doc()
    references = DOC_REFERENCE.findall(doc)
    problems = [broken_target(dag_file, reference, base=REPO_ROOT) for reference in references]

    assert len(doc.splitlines()) <= DAG_DOC_MAX_LINES
    assert "docs/aws.md" in {reference.partition("#")[0] for reference in references}
    assert [problem for problem in problems if problem] == []


def test_anchors_follow_githubs_heading_slugs() -> None:
    markdown = "# The DAG's tasks\n## extract_features: images to `MobileNetV2`\n## Faults\n## Faults\n"

    assert anchors(markdown) == {
        "the-dags-tasks",
        "extract_features-images-to-mobilenetv2",
        "faults",
        "faults-1",
    }


def test_the_check_reports_missing_pages_and_anchors_but_not_code_or_the_web(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n## A section\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n[ok](#page) [ok](other.md#a-section) [web](https://example.com/x#y) ![ok](other.md)\n"
        "[gone](#nowhere) [missing](missing.md) [no section](other.md#b-section) [out](../elsewhere.md)\n"
        "```\n[in code](missing-too.md)\n```\n`[inline](missing-three.md)`\n"
    )

    assert broken_links(page, root=tmp_path) == [
        "page.md: #nowhere: no heading #nowhere in page.md",
        "page.md: missing.md: no such file",
        "page.md: other.md#b-section: no heading #b-section in other.md",
        "page.md: ../elsewhere.md: no such file",
    ]


def test_make_commands_are_read_from_code_only() -> None:
    markdown = "Run `make demo`, then make sure of it.\n```bash\nmake test PYTEST_ARGS=-x  # or cmake build\n```\n"

    assert make_commands(markdown) == {"demo", "test"}
