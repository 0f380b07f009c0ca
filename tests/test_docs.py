"""The documentation's examples run and print what the pages say; every loss has its page."""

from __future__ import annotations

import ast
import doctest
import pathlib
import inspect
import re

import pytest

import anyloss

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
GUIDES = ["index.md", "guides/pytorch.md", "guides/numpy.md", "guides/pitfalls.md"]
FENCE = re.compile(r"^```pycon\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("page", GUIDES)
def test_page_examples(page):
    """Every ``pycon`` block of the page, run in order as one doctest session."""
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = FENCE.findall(text)
    assert blocks, f"{page} has no examples"
    parser = doctest.DocTestParser()
    test = parser.get_doctest("\n".join(blocks), {}, page, str(DOCS / page), 0)
    runner = doctest.DocTestRunner(
        optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    )
    runner.run(test)
    failures, tried = runner.summarize(verbose=False)
    assert tried > 0 and failures == 0, f"{failures} of {tried} examples in {page} failed (see output)"


@pytest.mark.parametrize("name", anyloss.__all__)
def test_every_loss_has_a_page(name):
    page = (DOCS / "losses" / f"{name}.md").read_text(encoding="utf-8")
    assert page.startswith(f"# {name}\n")
    assert f".. autofunction:: anyloss.{name}\n" in page
    assert f'lossplots.draw("{name}")' in page
    assert "## Shapes" in page
    index = (DOCS / "losses" / "index.md").read_text(encoding="utf-8")
    assert f"\n{name}\n" in index  # in the toctree
    assert f"({name}.md)" in index  # in the table


def _arg_entries(doc: str) -> dict[str, str]:
    """The text of each entry of a Google-style ``Args:`` section, by parameter name."""
    section = doc.split("Args:\n", 1)[1].split("\n\n", 1)[0]
    entries: dict[str, str] = {}
    name = None
    for line in section.splitlines():
        match = re.match(r"^    (\w+) \(", line)
        if match:
            name = match.group(1)
            entries[name] = line
        elif name is not None:
            entries[name] += " " + line.strip()
    return entries


@pytest.mark.parametrize("name", anyloss.__all__)
def test_every_docstring_states_its_defaults(name):
    """The pages list every argument with its default: the docstrings must give them."""
    func = getattr(anyloss, name)
    entries = _arg_entries(inspect.getdoc(func))
    for param in inspect.signature(func).parameters.values():
        assert param.name in entries, f"{name}: {param.name} is not documented"
        if param.default is not inspect.Parameter.empty:
            stated = re.search(r"Default: ``(.+?)``", entries[param.name])
            assert stated, f"{name}: {param.name} does not state its default"
            assert ast.literal_eval(stated.group(1)) == param.default, (name, param.name, stated.group(1))
