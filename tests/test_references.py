"""References close every notebook, and docs/references.bib holds each cited work once (issue "The front door",
item 6). The website builds its bibliography from the .bib, so the two must not drift: every link in a
notebook's ``## References`` cell is in the .bib, and every .bib entry is cited by some notebook.

The .bib parser lives here rather than in ``vae_lib``: no notebook uses it, and the library's layers
(tests/test_layout.py) are for what the notebooks import.
"""
import json
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIB = ROOT / "docs" / "references.bib"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

_NAME = re.compile(r"[A-Za-z][\w:.+-]*")
_KEY = re.compile(r"[^\s,{}()=\"#%]+")
_BARE = re.compile(r"[\w.:+-]+")
_URL = re.compile(r"https?://[^\s<>()\[\]{}\\]+")
_YEAR = re.compile(r"\((?:1[6-9]|20)\d\d[a-z]?\)")


def load_bib(path) -> dict[str, dict[str, str]]:
    """The entries of the BibTeX file at ``path``: ``{key: {field: value}}``, field names in lower case, the
    entry's type under ``"ENTRYTYPE"``, values without their outer braces or quotes, whitespace collapsed.

    Reads the subset the course's .bib uses: ``@type{key, field = {value} | "value" | bare, ...}`` entries,
    with blank lines and ``%`` comment lines between them. Raises ``ValueError`` naming the line and the
    entry on anything else: text outside an entry, a missing key or ``=``, an unclosed brace or quote,
    a field given twice, or two entries with one key.
    """
    return parse_bib(Path(path).read_text(encoding="utf-8"))


def parse_bib(text: str) -> dict[str, dict[str, str]]:
    """``load_bib`` for a string."""
    n = len(text)

    def where(i: int) -> str:
        return f"line {text.count(chr(10), 0, i) + 1}"

    def skip(i: int) -> int:
        while i < n:
            if text[i].isspace():
                i += 1
            elif text[i] == "%":
                end = text.find("\n", i)
                i = n if end < 0 else end
            else:
                break
        return i

    def value(i: int, key: str, name: str) -> tuple[str, int]:
        if text[i:i + 1] in ("{", '"'):
            close, depth, j = ("}" if text[i] == "{" else '"'), 0, i + 1
            while j < n:
                c = text[j]
                if c == "\\":
                    j += 2
                    continue
                if c == "{":
                    depth += 1
                elif c == "}" and depth:
                    depth -= 1
                elif c == close and depth == 0:
                    return " ".join(text[i + 1:j].split()), j + 1
                elif c == "}":          # a stray closing brace inside a quoted value
                    break
                j += 1
            raise ValueError(f"{where(i)}: entry {key!r}, field {name!r}: the value's {text[i]!r} is never closed")
        m = _BARE.match(text, i)
        if not m:
            raise ValueError(f"{where(i)}: entry {key!r}, field {name!r}: expected a value, found {text[i:i + 20]!r}")
        return m.group(), m.end()

    entries: dict[str, dict[str, str]] = {}
    pos = skip(0)
    while pos < n:
        if text[pos] != "@":
            raise ValueError(f"{where(pos)}: expected '@' to start an entry, found {text[pos:pos + 20]!r}")
        m = _NAME.match(text, pos + 1)
        if not m:
            raise ValueError(f"{where(pos)}: '@' without an entry type")
        kind = m.group().lower()
        pos = skip(m.end())
        if text[pos:pos + 1] != "{":
            raise ValueError(f"{where(pos)}: expected '{{' after @{kind}")
        pos = skip(pos + 1)
        m = _KEY.match(text, pos)
        if not m:
            raise ValueError(f"{where(pos)}: @{kind} entry without a key")
        key = m.group()
        pos = skip(m.end())
        if text[pos:pos + 1] != ",":
            raise ValueError(f"{where(pos)}: entry {key!r}: expected ',' after the key")
        fields = {"ENTRYTYPE": kind}
        pos = skip(pos + 1)
        while True:
            if pos >= n:
                raise ValueError(f"entry {key!r} is never closed with '}}'")
            if text[pos] == "}":
                pos += 1
                break
            m = _NAME.match(text, pos)
            if not m:
                raise ValueError(f"{where(pos)}: entry {key!r}: expected a field name, found {text[pos:pos + 20]!r}")
            name = m.group().lower()
            pos = skip(m.end())
            if text[pos:pos + 1] != "=":
                raise ValueError(f"{where(pos)}: entry {key!r}: expected '=' after field {name!r}")
            fields_value, pos = value(skip(pos + 1), key, name)
            if name in fields:
                raise ValueError(f"{where(pos)}: entry {key!r} gives field {name!r} twice")
            fields[name] = fields_value
            pos = skip(pos)
            if pos >= n:
                raise ValueError(f"entry {key!r} is never closed with '}}'")
            if text[pos:pos + 1] == ",":
                pos = skip(pos + 1)
            elif text[pos:pos + 1] != "}":
                raise ValueError(f"{where(pos)}: entry {key!r}: expected ',' or '}}' after field {name!r}")
        if key in entries:
            raise ValueError(f"two entries have the key {key!r}")
        entries[key] = fields
        pos = skip(pos)
    return entries


def identifier(url: str) -> str:
    """What a link points at: ``arxiv:<id>`` without its version, ``doi:<doi>`` in lower case, else the URL."""
    if m := re.search(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})(?:v\d+)?", url):
        return "arxiv:" + m.group(1)
    if m := re.search(r"doi\.org/(10\.\d{4,9}/\S+)", url):
        return "doi:" + m.group(1).lower()
    return url


def entry_identifiers(entry: dict[str, str]) -> set[str]:
    """Everything an entry can be cited by: its eprint (arXiv), its DOI and every URL in any of its fields."""
    found = {identifier(url.rstrip(".,;")) for value in entry.values() for url in _URL.findall(value)}
    if entry.get("archiveprefix", "").lower() == "arxiv" and entry.get("eprint"):
        found.add("arxiv:" + re.sub(r"v\d+$", "", entry["eprint"]))
    if entry.get("doi"):
        found.add("doi:" + re.sub(r"^https?://(dx\.)?doi\.org/", "", entry["doi"]).lower())
    return found


def references_cell(path: Path) -> str:
    """The source of the notebook's last cell, where its references are."""
    cell = json.loads(path.read_text(encoding="utf-8"))["cells"][-1]
    assert cell["cell_type"] == "markdown", f"{path.name}: the last cell is {cell['cell_type']}, not the references"
    source = "".join(cell["source"])
    assert source.startswith("## References"), f"{path.name}: the last cell does not begin with '## References'"
    return source


def bullets(source: str) -> list[str]:
    """The items of a Markdown list, each with its indented continuation lines."""
    items = []
    for line in source.splitlines():
        if re.match(r"[-*] ", line):
            items.append(line[2:])
        elif items and line.startswith("  ") and line.strip():
            items[-1] += " " + line.strip()
    return items


def links(item: str) -> list[str]:
    return [url.rstrip(".,;") for url in _URL.findall(item)]


@pytest.fixture(scope="module")
def bib():
    return load_bib(BIB)


# The parser.

def test_load_bib_reads_entries_fields_and_values(tmp_path):
    path = tmp_path / "x.bib"
    path.write_text('% a comment\n@InProceedings{a2020b,\n  Author = {A, B. and {C}, D.},\n  title = "A {VAE}\n   title",'
                    '\n  year = 2020,\n}\n\n@misc{c, url={https://x.org/a?b=1}}\n', encoding="utf-8")
    entries = load_bib(path)
    assert list(entries) == ["a2020b", "c"]
    assert entries["a2020b"] == {"ENTRYTYPE": "inproceedings", "author": "A, B. and {C}, D.", "title": "A {VAE} title",
                                 "year": "2020"}
    assert entry_identifiers(entries["c"]) == {"https://x.org/a?b=1"}


@pytest.mark.parametrize("text, message", [
    ("@misc{a, title={x}}\n@misc{a, title={y}}", "two entries have the key 'a'"),
    ("@misc{a, title={x}, title={y}}", "gives field 'title' twice"),
    ("@misc{a, title={x}", "'a' is never closed"),
    ("@misc{a, title={x}, year=2020", "'a' is never closed"),
    ("@misc{a, title={x {y}", "value's '{' is never closed"),
    ('@misc{a, title="x}', "value's '\"' is never closed"),
    ("@misc{, title={x}}", "without a key"),
    ("@misc{a title={x}}", "expected ',' after the key"),
    ("@misc{a, title {x}}", "expected '=' after field 'title'"),
    ("@misc{a, title={x} year={2}}", "expected ',' or '}' after field 'title'"),
    ("@misc{a, title=}", "expected a value"),
    ("misc{a, title={x}}", "line 1: expected '@'"),
    ("@misc{a, title={x}}\nstray text", "line 2: expected '@'"),
])
def test_load_bib_rejects_malformed_input(tmp_path, text, message):
    path = tmp_path / "bad.bib"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(message)):
        load_bib(path)


def test_identifiers_normalise_arxiv_and_doi_links():
    assert identifier("https://arxiv.org/pdf/1312.6114v10") == identifier("https://arxiv.org/abs/1312.6114")
    assert identifier("https://doi.org/10.1109/5.726791") == "doi:10.1109/5.726791"
    assert entry_identifiers({"eprint": "1312.6114v2", "archiveprefix": "arXiv", "doi": "10.1007/BF00992696"}) == {
        "arxiv:1312.6114", "doi:10.1007/bf00992696"}
    assert identifier("https://openreview.net/forum?id=Sy2fzU9gl") == "https://openreview.net/forum?id=Sy2fzU9gl"


def test_the_checks_catch_a_missing_entry_and_a_bullet_without_a_link():
    """The notebook checks below, run on a planted mistake: a link the .bib lacks, and a bullet with no link."""
    entries = parse_bib("@misc{k, author={A}, title={T}, year={2014}, eprint={1312.6114}, archivePrefix={arXiv}}")
    known = set().union(*(entry_identifiers(e) for e in entries.values()))
    assert "arxiv:1312.6114" in known and "arxiv:1401.4082" not in known
    items = bullets("## References\n\n- A (2014). T. [arXiv](https://arxiv.org/abs/1401.4082)\n- B (2015). U.\n")
    assert [identifier(u) for u in links(items[0])] == ["arxiv:1401.4082"] and links(items[1]) == []


# The .bib.

def test_the_bib_has_no_key_twice():
    keys = re.findall(r"^@\w+\s*\{\s*([^,\s]+)\s*,", BIB.read_text(encoding="utf-8"), flags=re.M)
    assert keys, "docs/references.bib has no entries"
    assert not [k for k, count in Counter(keys).items() if count > 1], "keys used twice in docs/references.bib"


def test_every_bib_entry_has_author_title_year_and_a_link(bib):
    for key, entry in bib.items():
        missing = [f for f in ("author", "title", "year") if not entry.get(f)]
        assert not missing, f"{key} lacks {missing}"
        assert re.fullmatch(r"(1[6-9]|20)\d\d", entry["year"]), f"{key}: year {entry['year']!r}"
        assert any(entry.get(f) for f in ("url", "doi", "eprint")), f"{key} has no url, doi or eprint"
        if entry.get("eprint"):
            assert entry.get("archiveprefix") == "arXiv", f"{key}: an eprint needs archivePrefix = {{arXiv}}"
            assert re.fullmatch(r"\d{4}\.\d{4,5}", entry["eprint"]), f"{key}: eprint {entry['eprint']!r}"


def test_every_bib_entry_is_cited_by_a_notebook(bib):
    cited = {identifier(url) for path in NOTEBOOKS for item in bullets(references_cell(path)) for url in links(item)}
    uncited = sorted(key for key, entry in bib.items() if not entry_identifiers(entry) & cited)
    assert not uncited, f"docs/references.bib entries that no notebook's References cell links to: {uncited}"


# The notebooks.

@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_ends_with_its_references(path):
    assert bullets(references_cell(path)), f"{path.name}: the References cell lists no work"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_reference_has_a_year_and_a_link(path):
    for item in bullets(references_cell(path)):
        assert _YEAR.search(item), f"{path.name}: no year in parentheses in {item[:80]!r}"
        assert links(item), f"{path.name}: no http(s) link in {item[:80]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_cited_work_is_in_the_bib(path, bib):
    """Each bullet is one work: all its links (arXiv ids and DOIs normalised, other URLs exact) belong to one entry."""
    by_entry = {key: entry_identifiers(entry) for key, entry in bib.items()}
    for item in bullets(references_cell(path)):
        wanted = {identifier(url) for url in links(item)}
        assert any(wanted <= known for known in by_entry.values()), (
            f"{path.name}: no entry of docs/references.bib has {sorted(wanted - set().union(*by_entry.values())) or wanted}"
            f" (cited in {item[:80]!r})")
