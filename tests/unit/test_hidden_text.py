"""Text a reader of a document cannot see is not read (issue 14: hostile documents)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from docx import Document
from docx.enum.text import WD_COLOR_INDEX
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import RGBColor
from docx.table import _Cell

from ingest.parsing import ParsedDocument, parse, visible_html

pytestmark = pytest.mark.unit

INJECTION = Path(__file__).resolve().parents[2] / "bench" / "eval" / "injection"

HIDING_PAGE = """<!DOCTYPE html>
<html><head><title>Hiding</title><style>.gone { display: none }</style></head>
<body>
<h1>Visible heading.</h1>
<div style="display:none">HIDE-DISPLAY</div>
<div style="color: red; VISIBILITY: Hidden !important">HIDE-VISIBILITY</div>
<table>
<tr style="visibility:collapse"><td>HIDE-COLLAPSE</td></tr>
<tr><td>Visible cell.</td></tr>
</table>
<p><span style="font-size:0">HIDE-FONT</span><span style="font-size: 0px">HIDE-FONT-PX</span>
<span style="font-size:0.0em">HIDE-FONT-EM</span>Visible after spans.</p>
<p style="opacity:0">HIDE-OPACITY</p>
<p hidden>HIDE-ATTRIBUTE</p>
<template><p>HIDE-TEMPLATE</p></template>
<img hidden src="x.png" alt="HIDE-ALT">
<div><span style="display:none">HIDE-PARENT <b hidden>HIDE-CHILD</b></span>Visible tail.</div>
<div><p style="display:none">HIDE-SIBLING</p><p>Visible sibling.</p></div>
<p aria-hidden="true">Visible aria-hidden.</p>
<p style="display:none; display:block">Visible overridden.</p>
<p style="font-size:12px; opacity:0.5; visibility:visible">Visible styled.</p>
<p hidden="until-found">Visible until found.</p>
<noscript>Visible noscript.</noscript>
</body></html>
"""
HIDDEN_PASSAGES = 12  # the outermost elements above that hide HIDE-… text


def page_text(html: str) -> str:
    return BeautifulSoup(html, "lxml").get_text(" ")


def document_text(parsed: ParsedDocument) -> str:
    return "\n".join(section.text for section in parsed.sections)


def test_visible_html_drops_each_kind_of_hidden_element() -> None:
    visible, hidden = visible_html(HIDING_PAGE)
    text = page_text(visible)
    assert "HIDE-" not in text
    for line in ("heading", "cell", "after spans", "tail", "sibling", "aria-hidden"):
        assert f"Visible {line}." in text
    for line in ("overridden", "styled", "until found", "noscript"):
        assert f"Visible {line}." in text
    assert hidden == HIDDEN_PASSAGES


def test_visible_html_returns_page_unchanged_when_nothing_is_hidden() -> None:
    page = "<html><body><h1>Title</h1><p style='color: white'>Text.</p></body></html>"
    assert visible_html(page) == (page, 0)


def test_visible_html_keeps_a_whole_page_hidden_until_a_script_shows_it() -> None:
    page = "<html style='visibility:hidden'><body style='display:none'><p>Text.</p></body></html>"
    assert visible_html(page) == (page, 0)


def test_parse_html_leaves_hidden_text_out_and_counts_it(tmp_path: Path) -> None:
    path = tmp_path / "hiding.html"
    path.write_text(HIDING_PAGE, encoding="utf-8")
    before = path.read_bytes()
    parsed = parse(path)
    text = document_text(parsed)
    assert "HIDE-" not in text
    assert "Visible tail." in text
    assert "Visible sibling." in text
    assert parsed.hidden_passages == HIDDEN_PASSAGES
    assert path.read_bytes() == before


def _shade(cell: _Cell, fill: str) -> None:
    """Give a table cell a background colour, as Word's Shading button does."""
    shading = OxmlElement("w:shd")
    shading.set(qn("w:val"), "clear")
    shading.set(qn("w:color"), "auto")
    shading.set(qn("w:fill"), fill)
    cell._tc.get_or_add_tcPr().append(shading)


def test_parse_docx_drops_hidden_and_white_runs(tmp_path: Path) -> None:
    document = Document()
    document.add_heading("Visible heading", level=1)
    paragraph = document.add_paragraph()
    paragraph.add_run("Visible normal. ")
    paragraph.add_run("HIDE-VANISH ").font.hidden = True
    paragraph.add_run("Visible not vanished. ").font.hidden = False  # <w:vanish w:val="0"/>
    paragraph.add_run("HIDE-WHITE ").font.color.rgb = RGBColor(0xFF, 0xFF, 0xFF)
    highlighted = paragraph.add_run("Visible highlighted. ")
    highlighted.font.color.rgb = RGBColor(0xFF, 0xFF, 0xFF)
    highlighted.font.highlight_color = WD_COLOR_INDEX.DARK_BLUE
    document.add_paragraph().add_run("HIDE-ALONE").font.hidden = True
    table = document.add_table(rows=2, cols=2)
    for row, (name, value) in enumerate([("Plain", "HIDE-CELL"), ("Shaded", "Visible cell")]):
        table.cell(row, 0).text = name
        run = table.cell(row, 1).paragraphs[0].add_run(value)
        run.font.color.rgb = RGBColor(0xFF, 0xFF, 0xFF)
    _shade(table.cell(1, 1), "1F3864")
    path = tmp_path / "hiding.docx"
    document.save(str(path))
    before = path.read_bytes()

    parsed = parse(path)

    text = document_text(parsed)
    assert "HIDE-" not in text
    for kept in (
        "Visible normal.",
        "Visible not vanished.",
        "Visible highlighted.",
        "Visible cell",
    ):
        assert kept in text
    assert parsed.hidden_passages == 3  # the first paragraph, the lone one, the plain cell
    assert path.read_bytes() == before


def test_parse_docx_keeps_white_text_on_a_coloured_page(tmp_path: Path) -> None:
    document = Document()
    document.add_paragraph().add_run("Visible on blue.").font.color.rgb = RGBColor(0xFF, 0xFF, 0xFF)
    background = OxmlElement("w:background")
    background.set(qn("w:color"), "1F3864")
    document.element.insert(0, background)
    path = tmp_path / "blue.docx"
    document.save(str(path))

    parsed = parse(path)

    assert "Visible on blue." in document_text(parsed)
    assert parsed.hidden_passages == 0


def _red_team_files() -> dict[str, tuple[str, list[str]]]:
    """file -> (its hidden injection, the answers its visible text holds)."""
    files: dict[str, tuple[str, list[str]]] = {}
    with (INJECTION / "cases.jsonl").open(encoding="utf-8") as lines:
        for case in map(json.loads, lines):
            if case["kind"] in ("html_hidden", "docx_hidden"):
                _, answers = files.setdefault(case["file"], (case["injection"], []))
                if case.get("answer"):
                    answers.append(case["answer"])
    return files


RED_TEAM = _red_team_files()


def test_red_team_files_include_the_html_and_docx_cases() -> None:
    assert "hostile/html-en-01-parking-policy.html" in RED_TEAM
    assert "hostile/docx-en-01-procurement-policy.docx" in RED_TEAM


@pytest.mark.parametrize("name", sorted(RED_TEAM))
def test_red_team_file_loses_hidden_injection_and_keeps_its_content(name: str) -> None:
    injection, answers = RED_TEAM[name]
    text = document_text(parse(INJECTION / name))
    assert injection not in text
    assert answers
    for answer in answers:
        assert answer in text
