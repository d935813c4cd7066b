"""The documentation keeps up with the code (issue 24), checked without MkDocs installed.

`tools/docs.sh` (CI) builds the site with ``mkdocs build --strict``, which fails on a broken link,
anchor or API name; these tests check what a build cannot see: that every command and option
of the CLI is documented in the user guide and in the generated CLI reference, that every public
name of ``geogan`` has an entry in the API reference, and that the README stays a short front
page.
"""
from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

import geogan
from geogan.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _guide_text() -> str:
    """Every page of the site as written (the CLI reference is generated, so it is left out)."""
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md")) if p.name != "cli.md")


def _option_strings(command: click.Command) -> set[str]:
    ctx = click.Context(command, info_name=command.name)
    return {opt for param in command.get_params(ctx) if isinstance(param, click.Option)
            for opt in param.opts + param.secondary_opts}


def _commands() -> list[tuple[str, click.Command]]:
    return [("geogan", cli)] + [(f"geogan {name}", cmd) for name, cmd in sorted(cli.commands.items())]


def test_the_cli_reference_is_generated_from_every_command():
    """mkdocs-click renders ``geogan.cli:cli`` and, recursively, every subcommand and option."""
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    directives = re.findall(r"^::: mkdocs-click\n((?:    :.*\n)+)", page, flags=re.M)
    assert len(directives) == 1, "docs/cli.md must hold one mkdocs-click directive"
    options = dict(re.findall(r"^    :([a-z_]+):\s*(.*)$", directives[0], flags=re.M))
    assert (options["module"], options["command"]) == ("geogan.cli", "cli")
    assert "depth" not in options or int(options["depth"]) >= 0
    assert getattr(__import__(options["module"], fromlist=["x"]), options["command"]) is cli
    mkdocs = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^\s+- mkdocs-click\s*$", mkdocs, flags=re.M), "mkdocs.yml must enable the extension"


@pytest.mark.parametrize("label,command", _commands(), ids=[label for label, _ in _commands()])
def test_every_option_is_explained_in_the_guide(label, command):
    """The user guide names every option that ``--help`` prints, for every command."""
    text = _guide_text()
    missing = sorted(opt for opt in _option_strings(command) if not re.search(re.escape(opt) + r"(?![\w-])", text))
    assert not missing, f"{label}: options not mentioned in docs/*.md: {', '.join(missing)}"


def test_every_command_has_a_guide_page_link():
    text = _guide_text()
    for name in cli.commands:
        assert f"`geogan {name}" in text, f"geogan {name} is not documented in docs/*.md"


def test_the_api_reference_lists_every_public_name():
    """docs/api.md has a mkdocstrings entry ``::: module.name`` for each name of ``geogan.__all__``."""
    page = (DOCS / "api.md").read_text(encoding="utf-8")
    entries = re.findall(r"^::: (geogan(?:\.\w+)*)\.(\w+)\s*$", page, flags=re.M)
    documented = {name for _, name in entries}
    public = set(geogan.__all__) - {"__version__"}
    assert public <= documented, f"missing from docs/api.md: {sorted(public - documented)}"
    for module, name in entries:  # each entry names the module that really defines the object
        obj = getattr(geogan, name)
        assert getattr(obj, "__module__", None) == module or module == geogan._LAZY.get(name), (module, name)


def test_the_public_functions_have_docstrings():
    """The API reference renders docstrings: a public name without one would be an empty entry."""
    bare = [name for name in geogan.__all__ if name != "__version__" and not (getattr(geogan, name).__doc__ or "").strip()]
    assert not bare, f"public names without a docstring: {bare}"


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {p.name for p in DOCS.glob("*.md")}
    listed = set(re.findall(r":\s*([\w-]+\.md)\s*$", nav, flags=re.M))
    assert pages == listed, f"pages not in the nav: {sorted(pages - listed)}; missing: {sorted(listed - pages)}"


def test_the_readme_is_a_short_front_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = readme.splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; the details belong in docs/"
    for command in ("tools/demo.sh", "tools/test.sh"):
        assert command in readme
    for link in re.findall(r"\]\(((?:docs/)?[\w./-]+\.(?:md|png))(?:#[\w-]+)?\)", readme):
        assert (ROOT / link).is_file(), f"README links to a missing file: {link}"


def test_the_changelog_is_the_site_page():
    page = (DOCS / "changelog.md").read_text(encoding="utf-8")
    assert '--8<-- "CHANGELOG.md"' in page
    assert (ROOT / "CHANGELOG.md").is_file()
