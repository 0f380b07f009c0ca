"""The documentation's examples run and print what the pages say; every loss has its page;
the built pages render their formulas offline and fit a 1280 px window."""

from __future__ import annotations

import ast
import doctest
import html
import inspect
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

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


def _tables(text: str):
    """The markdown tables of a page: lists of consecutive lines that start with ``|``."""
    table: list[str] = []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            yield table
            table = []


@pytest.mark.parametrize("page", sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "_build" not in p.parts))
def test_tables_have_the_same_cells_in_every_row(page):
    """A ``|`` in a cell, even inside backticks, starts a new cell unless escaped as ``\\|``."""
    for table in _tables((DOCS / page).read_text(encoding="utf-8")):
        cells = [len(re.findall(r"(?<!\\)\|", row)) for row in table]
        assert set(cells) == {cells[0]}, f"{page}: a row of the table starting {table[0]!r} has a stray |"


README = DOCS.parent / "README.md"
_NO_OTHER_LIBRARY = """
import sys

class _Missing:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "jax", "jaxlib", "mlx", "dask", "cupy", "numba"):
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, _Missing())
"""


def _readme_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)


def test_readme_numpy_example_needs_only_numpy():
    """The README's first example runs where NumPy is the only array library; the PyTorch one after it."""
    numpy_part, torch_part = _readme_blocks("python")[:2]
    alone = subprocess.run([sys.executable, "-c", _NO_OTHER_LIBRARY + numpy_part], capture_output=True, text=True)
    assert alone.returncode == 0, alone.stderr
    both = subprocess.run(
        [sys.executable, "-c", numpy_part + torch_part + "\nprint(x.grad.tolist())"], capture_output=True, text=True
    )
    assert both.returncode == 0, both.stderr
    assert [[round(g, 4) for g in row] for row in json.loads(both.stdout)] == [[-0.0237, 0.0237], [0.0237, -0.0237]]


def _extras_installed(text: str) -> list[str]:
    return re.findall(r'^pip install "?\.(?:\[(\w+)\])?"?\s', text, re.MULTILINE)


def test_install_lists_agree_with_the_extras():
    """The README and the docs' index list the same installs, each an extra that pyproject.toml has."""
    pyproject = (DOCS.parent / "pyproject.toml").read_text(encoding="utf-8")
    section = pyproject.split("[project.optional-dependencies]\n", 1)[1].split("\n[", 1)[0]
    extras = re.findall(r"^([\w-]+) = \[", section, re.MULTILINE)
    assert "torch" in extras and "demo" in extras
    readme = _extras_installed(README.read_text(encoding="utf-8"))
    index = _extras_installed((DOCS / "index.md").read_text(encoding="utf-8"))
    assert readme == index
    assert readme[0] == ""  # plain ``pip install .`` first
    assert set(readme[1:]) <= set(extras)
    assert "pip install anyloss" not in README.read_text(encoding="utf-8")  # not on PyPI


# ----------------------------------------------------------------------- the built site
#
# The pages as a reader gets them: built as CI builds them (warnings are errors), then
# opened in headless Chromium, with no network.  ANYLOSS_DOCS_HTML names an existing build
# to check instead (CI builds the docs once, before the tests).

HTML_PAGES_SKIPPED = ("genindex.html", "search.html", "py-modindex.html")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    prebuilt = os.environ.get("ANYLOSS_DOCS_HTML")
    if prebuilt:
        return pathlib.Path(prebuilt).resolve()
    out = tmp_path_factory.mktemp("html")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(out)]
    build = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert build.returncode == 0, f"the docs do not build:\n{build.stderr[-4000:]}"
    return out


def _pages(site: pathlib.Path) -> list[str]:
    return sorted(
        str(p.relative_to(site))
        for p in site.rglob("*.html")
        if p.name not in HTML_PAGES_SKIPPED and "_modules" not in p.parts and "_static" not in p.parts
    )


class _Resources(HTMLParser):
    """The scripts, stylesheets and images a page loads, by URL."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.loaded: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
            self.loaded.append(attrs["src"])
        elif tag == "link" and "stylesheet" in (attrs.get("rel") or "") and attrs.get("href"):
            self.loaded.append(attrs["href"])
        elif tag == "img" and attrs.get("src"):
            self.loaded.append(attrs["src"])


def test_math_is_rendered_by_a_mathjax_that_ships_with_the_docs(site):
    with_math = 0
    for page in _pages(site):
        text = (site / page).read_text(encoding="utf-8")
        if 'class="math' not in text:
            continue
        with_math += 1
        scripts = [s for s in _Resources(text).scripts if "mathjax" in s.lower()]
        assert len(scripts) == 1, f"{page} loads MathJax {len(scripts)} times: {scripts}"
        assert "//" not in scripts[0], f"{page} loads MathJax from {scripts[0]}"
        assert ((site / page).parent / scripts[0].split("?")[0]).is_file(), f"{page}: {scripts[0]} is missing"
    assert with_math >= len(anyloss.__all__)  # every loss page has its formula
    fonts = site / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
    assert (fonts / "MathJax_Main-Regular.woff").is_file(), "MathJax's fonts are not in the build"


def test_no_page_loads_anything_from_the_network(site):
    """Links may point anywhere; what a page loads to show itself ships with the docs."""
    for page in _pages(site):
        loaded = _Resources((site / page).read_text(encoding="utf-8")).loaded
        remote = [url for url in loaded if re.match(r"([a-z]+:)?//", url)]
        assert not remote, f"{page} needs the network for {remote}"


# A page that opens every page of the site in a 1280 px wide frame, one after the other,
# waits for MathJax, and writes what it measured into its own DOM for --dump-dom.
_PROBE = r"""<!doctype html><html><body><script>
var pages = __PAGES__, width = __WIDTH__, results = {};
function measure(win) {
  var doc = win.document, out = {cut_off: [], raw_tex: []};
  doc.querySelectorAll(".table-wrapper, div.highlight pre, dl.py > dt, mjx-container[display]")
    .forEach(function (el) {
      if (el.scrollWidth > el.clientWidth + 1) {
        out.cut_off.push(el.tagName.toLowerCase() + ", " + el.scrollWidth + " px in " + el.clientWidth
                         + " px: " + el.textContent.trim().slice(0, 50));
      }
    });
  out.page_too_wide = doc.documentElement.scrollWidth > win.innerWidth;
  out.formulas = doc.querySelectorAll("span.math, div.math").length;
  out.typeset = doc.querySelectorAll("mjx-container").length;
  out.tex_errors = doc.querySelectorAll("mjx-merror").length;
  var walker = doc.createTreeWalker(doc.querySelector("article") || doc.body, win.NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    var node = walker.currentNode;
    if (node.parentElement.closest("pre, code, script, style, mjx-assistive-mml")) continue;
    if (/\\\(|\\\[|\$\$/.test(node.textContent)) out.raw_tex.push(node.textContent.trim().slice(0, 60));
  }
  return out;
}
function probe(page) {
  return new Promise(function (resolve) {
    var frame = document.createElement("iframe");
    frame.style.width = width + "px";
    frame.style.height = "900px";
    frame.onload = function () {
      var win = frame.contentWindow;
      var done = function () {
        setTimeout(function () { resolve(measure(win)); frame.remove(); }, 50);
      };
      var mathjax = win.MathJax;
      if (mathjax && mathjax.startup && mathjax.startup.promise) mathjax.startup.promise.then(done, done);
      else done();
    };
    frame.src = page;
    document.body.appendChild(frame);
  });
}
(async function () {
  for (var i = 0; i < pages.length; i++) results[pages[i]] = await probe(pages[i]);
  var pre = document.createElement("pre");
  pre.id = "results";
  pre.textContent = JSON.stringify(results);
  document.body.appendChild(pre);
})();
</script></body></html>
"""


@pytest.fixture(scope="module")
def in_browser(site, tmp_path_factory) -> dict:
    """What headless Chromium shows of every page, 1280 px wide, by page."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("CI checks the docs in Chromium: install it (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    work = tmp_path_factory.mktemp("chromium")
    pages = _pages(site)
    probe = work / "probe.html"
    uris = [(site / p).as_uri() for p in pages]
    probe.write_text(_PROBE.replace("__PAGES__", json.dumps(uris)).replace("__WIDTH__", "1280"), encoding="utf-8")
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--allow-file-access-from-files", f"--user-data-dir={work / 'profile'}",
        "--window-size=1400,1000", "--virtual-time-budget=300000", "--dump-dom", probe.as_uri(),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    found = re.search(r'<pre id="results">(.*?)</pre>', run.stdout, re.DOTALL)
    assert found, f"Chromium did not finish the pages:\n{run.stderr[-3000:]}"
    results = json.loads(html.unescape(found.group(1)))
    return {page: results[uri] for page, uri in zip(pages, uris)}


def test_every_formula_is_typeset(in_browser):
    """No formula is left as TeX source, and MathJax understood every one."""
    for page, seen in in_browser.items():
        assert not seen["raw_tex"], f"{page} shows TeX source: {seen['raw_tex']}"
        assert seen["typeset"] == seen["formulas"], f"{page}: {seen['typeset']} of {seen['formulas']} typeset"
        assert seen["tex_errors"] == 0, f"{page}: MathJax could not read {seen['tex_errors']} formulas"
    assert sum(seen["typeset"] for seen in in_browser.values()) > 50


def test_nothing_is_cut_off_at_1280_px(in_browser):
    """Tables, code and signatures fit the text column of a 1280 px window."""
    for page, seen in in_browser.items():
        assert not seen["cut_off"], f"{page}, 1280 px wide: {seen['cut_off']}"
        assert not seen["page_too_wide"], f"{page} is wider than a 1280 px window"
