"""The notebooks Colab opens: each MyST chapter with its Markdown cells rewritten as plain Markdown.

A chapter's source is ``notebooks/NN_name.md`` (MyST, what the book renders). Colab, plain Jupyter,
nbconvert and GitHub render CommonMark with ``$...$`` maths but no MyST, so ``milr reproduce`` writes the
tracked ``notebooks/NN_name.ipynb`` with the same cells, code and tags unchanged, and every Markdown cell
rewritten by ``plain_markdown``:

- an admonition (``admonition`` with its title, or ``note``, ``warning``, ``tip``, ``important``,
  ``seealso``) becomes a quoted block under its title in bold;
- a ``glue:figure`` directive becomes the bold caption "**Figure C.N.** ..." (C the chapter's number as the
  book numbers it: its rank among the numbered chapters of ``_toc.yml``; N its rank in the chapter); the
  figure itself and its data
  sentence are displayed above it by the cell that draws it (``book.figure``), so the caption's
  ``glue:md`` role for ``NAME-data`` is dropped;
- a ``numref`` role becomes "Figure C.N"; ``cite:p`` "([Iyer et al., 2023](link))" and ``cite:t``
  "[Iyer et al. (2023)](link)", from ``references.bib`` (the link: the entry's arXiv id, URL or DOI, else
  the entry in the repository's ``references.bib``); ``doc`` a link titled as the book titles it (a
  chapter opens on Colab, a book page on the repository's web view); ``py:...`` and ``math`` code and
  maths.

Anything else (another directive, a ``glue`` role in prose, an unknown role or reference) is a
``ColabError`` naming the notebook and the cell: a chapter must not show raw MyST on Colab. Prose that
needs a number computed at run time is displayed by a code cell (``book.say``), never glued into prose.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml

ADMONITIONS = ("admonition", "note", "warning", "tip", "important", "seealso")
FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}\s*(?P<argument>.*)$")
PLAIN_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})")
ROLE = re.compile(r"\{(?P<name>[\w:-]+)\}`(?P<content>[^`]+)`")
TARGET = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$")  # "text <target>" in a role
COLAB = "https://colab.research.google.com/github/"


class ColabError(ValueError):
    """A chapter's Markdown holds MyST that has no plain-Markdown form; the message says where and what."""


@dataclass
class Links:
    """Where the plain Markdown's links point: the repository, the chapters' titles, the bibliography."""

    url: str  # the repository, from _config.yml
    branch: str
    titles: dict[str, str]  # a document (notebooks/02_power_law, book/reproduce) -> its title
    references: dict[str, dict[str, str]]  # a bibliography key -> its fields
    numbers: dict[str, int] = field(default_factory=dict)  # a chapter's stem -> its number in the book

    def web(self, path: str) -> str:
        """``path`` of the repository on its web view (GitHub's blob view for a GitHub URL)."""
        return f"{self.url}/blob/{self.branch}/{path}"

    def notebook(self, document: str) -> str:
        """A chapter's ``.ipynb``, opened on Colab when the repository is on GitHub."""
        if self.url.startswith("https://github.com/"):
            return f"{COLAB}{self.url.removeprefix('https://github.com/')}/blob/{self.branch}/{document}.ipynb"
        return self.web(f"{document}.ipynb")


@dataclass
class Context:
    """What converting one notebook needs: its name (for errors), number, figures and the links."""

    name: str
    number: int | None
    links: Links
    figures: dict[str, str] = field(default_factory=dict)  # figure name -> "C.N"


def read_links(root: Path) -> Links:
    """The repository URL and branch (``_config.yml``), every chapter's and page's title, the bibliography."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8")) or {}
    repository = config.get("repository") or {}
    titles = {}
    for path in [*sorted((root / "notebooks").glob("*.md")), *sorted((root / "book").glob("*.md"))]:
        heading = re.search(r"^# (.+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
        titles[path.relative_to(root).with_suffix("").as_posix()] = heading[1].strip() if heading else path.stem
    bib = root / "references.bib"
    references = parse_bib(bib.read_text(encoding="utf-8")) if bib.is_file() else {}
    toc = root / "_toc.yml"
    numbers = chapter_numbers(yaml.safe_load(toc.read_text(encoding="utf-8")) or {}) if toc.is_file() else {}
    url, branch = str(repository.get("url", "")).rstrip("/"), str(repository.get("branch", "main"))
    return Links(url, branch, titles, references, numbers)


def parse_bib(text: str) -> dict[str, dict[str, str]]:
    """The entries of a BibTeX file as key -> {field: value} (braces dropped; enough for our references.bib)."""
    entries = {}
    for match in re.finditer(r"@\w+\s*\{\s*([^,\s]+)\s*,(.*?)\n\}", text, re.DOTALL):
        fields = re.findall(r"(\w+)\s*=\s*(\{(?:[^{}]|\{[^{}]*\})*\}|\"[^\"]*\"|\d+)", match[2])
        entries[match[1]] = {name.lower(): re.sub(r"[{}\"]", "", value).strip() for name, value in fields}
    return entries


def chapter_numbers(toc: dict) -> dict[str, int]:
    """Each chapter's number as the book numbers it: its rank among the chapters of the numbered parts of the
    table of contents, counted on across parts (sphinx-multitoc-numbering), by its file's stem."""
    files = [chapter["file"] for part in toc.get("parts", []) if part.get("numbered") for chapter in part["chapters"]]
    return {Path(file).stem: rank for rank, file in enumerate(files, 1)}


# ----------------------------------------------------------------------------------------------------------
# citations, references, roles


def authors(entry: dict[str, str]) -> str:
    """"Iyer et al.", "Bordelon and Pehlevan" or "Hanin": the family names as author-year styles cite them."""
    names = [name.split(",")[0].strip() if "," in name else name.split()[-1] for name in entry["author"].split(" and ")]
    return names[0] if len(names) == 1 else " and ".join(names) if len(names) == 2 else f"{names[0]} et al."


def _reference_link(key: str, entry: dict[str, str], links: Links) -> str:
    if entry.get("eprint"):
        return f"https://arxiv.org/abs/{entry['eprint']}"
    if entry.get("url"):
        return entry["url"]
    if entry.get("doi"):
        return f"https://doi.org/{entry['doi']}"
    return links.web("references.bib")


def cite(keys: str, textual: bool, chapter: Context) -> str:
    parts = []
    for key in (k.strip() for k in keys.split(",")):
        entry = chapter.links.references.get(key)
        if entry is None:
            raise ColabError(f"{chapter.name}: no entry {key!r} in references.bib")
        link = _reference_link(key, entry, chapter.links)
        text = f"{authors(entry)} ({entry['year']})" if textual else f"{authors(entry)}, {entry['year']}"
        parts.append(f"[{text}]({link})")
    return "; ".join(parts) if textual else f"({'; '.join(parts)})"


def document(content: str, chapter: Context) -> str:
    """A ``{doc}`` reference as a link titled as the book titles it."""
    given = TARGET.match(content)
    text, target = (given["text"], given["target"]) if given else (None, content)
    path = target.lstrip("/") if target.startswith("/") else (Path("notebooks") / target).as_posix()
    path = re.sub(r"[^/]+/\.\./", "", path)  # notebooks/../book/reproduce -> book/reproduce
    if path not in chapter.links.titles:
        raise ColabError(f"{chapter.name}: {{doc}}`{content}` names no chapter or page")
    link = chapter.links.notebook(path) if path.startswith("notebooks/") else chapter.links.web(f"{path}.md")
    return f"[{text or chapter.links.titles[path]}]({link})"


def role(name: str, content: str, chapter: Context) -> str:
    """One MyST role in plain Markdown."""
    if name in ("cite:p", "cite", "cite:t"):
        return cite(content, name == "cite:t", chapter)
    if name == "doc":
        return document(content, chapter)
    if name == "numref":
        given = TARGET.match(content)
        target = given["target"] if given else content
        if target not in chapter.figures:
            raise ColabError(f"{chapter.name}: {{numref}}`{content}` names no figure of this chapter")
        number = f"Figure {chapter.figures[target]}"
        return given["text"].replace("%s", chapter.figures[target]) if given else number
    if name.startswith("py:"):
        return f"`{content}`"
    if name == "math":
        return f"${content}$"
    raise ColabError(f"{chapter.name}: the role {{{name}}} has no plain-Markdown form (a number computed at run time "
                     "is displayed by a code cell, book.say)")  # fmt: skip


def inline(text: str, chapter: Context) -> str:
    """``text`` with every role rewritten."""
    return ROLE.sub(lambda match: role(match["name"], match["content"], chapter), text)


# ----------------------------------------------------------------------------------------------------------
# directives


def _split_options(body: list[str]) -> tuple[dict[str, str], list[str]]:
    """A directive's ``:key: value`` lines and the rest (its content, leading blank lines dropped)."""
    options, rest = {}, list(body)
    while rest and (option := re.match(r"^:([\w-]+):\s*(.*)$", rest[0])):
        options[option[1]] = option[2]
        rest.pop(0)
    while rest and not rest[0].strip():
        rest.pop(0)
    return options, rest


def directive(name: str, argument: str, body: list[str], chapter: Context) -> list[str]:
    """One directive in plain Markdown, as lines."""
    options, content = _split_options(body)
    if name in ADMONITIONS:
        title = argument or name.capitalize()
        lines = [f"**{inline(title, chapter)}**", ""] + _convert_lines(content, chapter)
        return [f"> {line}".rstrip() for line in lines]
    if name == "glue:figure":
        figure = options.get("name", argument)
        caption = " ".join(line.strip() for line in content)
        caption = re.sub(r"\s*\{glue:md\}`" + re.escape(f"{argument}-data") + "`", "", caption).strip()
        return [f"**Figure {chapter.figures[figure]}.** {inline(caption, chapter)}"]
    raise ColabError(f"{chapter.name}: the directive {{{name}}} has no plain-Markdown form for Colab")


def blocks(lines: list[str]):
    """Split Markdown lines into ("text", lines), ("code", lines) and ("directive", name, argument, body)."""
    index = 0
    while index < len(lines):
        line = lines[index]
        opened = FENCE.match(line) or PLAIN_FENCE.match(line)
        if not opened:
            yield ("text", [line])
            index += 1
            continue
        fence = opened["fence"]
        end = next((j for j in range(index + 1, len(lines)) if lines[j].strip() == fence), None)
        if end is None:
            raise ColabError(f"an unclosed fence {fence} at: {line}")
        if "name" in opened.groupdict():
            yield ("directive", opened["name"], opened["argument"].strip(), lines[index + 1 : end])
        else:
            yield ("code", lines[index : end + 1])
        index = end + 1


def _convert_lines(lines: list[str], chapter: Context) -> list[str]:
    out: list[str] = []
    text: list[str] = []  # consecutive text lines, converted together (a role may wrap onto the next line)
    for block in [*blocks(lines), ("end", [])]:
        if block[0] == "text":
            text.extend(block[1])
            continue
        if text:
            out.extend(inline("\n".join(text), chapter).split("\n"))
            text = []
        if block[0] == "code":
            out.extend(block[1])
        elif block[0] == "directive":
            out.extend(directive(*block[1:], chapter))
    return out


def plain_markdown(source: str, chapter: Context) -> str:
    """One Markdown cell's MyST source in plain Markdown (see the module docstring)."""
    return "\n".join(_convert_lines(source.split("\n"), chapter))


def _figure_numbers(notebook: nbformat.NotebookNode, number: int | None) -> dict[str, str]:
    """Each ``{glue:figure}``'s name -> its number "C.N", in the order the chapter shows them."""
    names = []
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for block in blocks(cell.source.split("\n")):
                if block[0] == "directive" and block[1] == "glue:figure":
                    names.append(_split_options(block[3])[0].get("name", block[2]))
    prefix = f"{number}." if number is not None else ""
    return {name: f"{prefix}{rank}" for rank, name in enumerate(names, 1)}


def colab_notebook(notebook: nbformat.NotebookNode, stem: str, links: Links) -> nbformat.NotebookNode:
    """A copy of a MyST notebook (as jupytext reads it) with plain-Markdown cells and stable cell ids.

    Raises ColabError where a Markdown cell holds MyST without a plain form.
    """
    colab = copy.deepcopy(notebook)
    chapter = Context(stem, links.numbers.get(stem), links)
    chapter.figures = _figure_numbers(colab, chapter.number)
    seen: dict[str, int] = {}
    for index, cell in enumerate(colab.cells):
        if cell.cell_type == "markdown":
            try:
                cell.source = plain_markdown(cell.source, chapter)
            except ColabError as error:
                raise ColabError(f"{error} (Markdown cell {index})") from None
        digest = hashlib.sha256(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:8]
        seen[digest] = seen.get(digest, 0) + 1
        cell["id"] = digest if seen[digest] == 1 else f"{digest}-{seen[digest]}"  # stable across syncs
    return colab
