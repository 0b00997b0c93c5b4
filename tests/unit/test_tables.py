"""Tables read from HTML (what unstructured gives for every format but PDF) into cells."""

from __future__ import annotations

import pytest

from ingest.parsing import Table, read_table, table_from_grid

pytestmark = pytest.mark.unit


def _html(*rows: tuple[str, ...], cell: str = "td") -> str:
    body = "".join(
        "<tr>" + "".join(f"<{cell}>{value}</{cell}>" for value in row) + "</tr>" for row in rows
    )
    return f"<table>{body}</table>"


def test_first_row_of_names_is_the_header() -> None:
    table, caption = read_table(
        _html(("Warehouse", "SKU", "Item"), ("North", "SKU-1042", "Safety goggles"))
    )
    assert table == Table(("Warehouse", "SKU", "Item"), (("North", "SKU-1042", "Safety goggles"),))
    assert caption == ""


def test_rows_name_the_column_of_each_value() -> None:
    table = Table(
        ("Warehouse", "SKU", "Item"), (("North", "", "Safety goggles"), ("South", "S-1", ""))
    )
    assert table.text() == "Warehouse: North | Item: Safety goggles\nWarehouse: South | SKU: S-1"


def test_title_row_above_the_names_becomes_the_caption() -> None:
    # stanley-cups.csv starts with "Stanley Cups,," above "Team,Location,Stanley Cups".
    table, caption = read_table(
        _html(
            ("Stanley Cups", "", ""),
            ("Team", "Location", "Stanley Cups"),
            ("Blues", "STL", "1"),
            ("Flyers", "PHI", "2"),
        )
    )
    assert caption == "Stanley Cups"
    assert table.header == ("Team", "Location", "Stanley Cups")
    assert table.rows == (("Blues", "STL", "1"), ("Flyers", "PHI", "2"))


def test_a_group_row_above_data_is_not_a_caption() -> None:
    # A 10-K's table of contents: "PART I" heads the items, there are no column names.
    table, caption = read_table(
        _html(("PART I", "", ""), ("Item 1.", "Business", "4"), ("Item 1A.", "Risk Factors", "9"))
    )
    assert (caption, table.header) == ("", ())
    assert table.text().splitlines() == [
        "PART I",
        "Item 1. | Business | 4",
        "Item 1A. | Risk Factors | 9",
    ]


@pytest.mark.parametrize(
    "first",
    [
        ("Blues", "STL", "1"),  # a number among the values: data
        ("Nevada", "", "20-8143439"),  # a blank: a layout table, not names
        ("a", "a", "b"),  # repeated values
    ],
)
def test_a_first_row_of_data_is_not_a_header(first: tuple[str, ...]) -> None:
    table, _ = read_table(_html(first, ("Flyers", "PHI", "2")))
    assert table.header == ()


def test_years_and_a_blank_corner_may_head_columns() -> None:
    table, _ = read_table(_html(("", "2023", "2024"), ("Revenue", "1,204", "1,388")))
    assert table.header == ("", "2023", "2024")
    assert table.row_line(table.rows[0]) == "Revenue | 2023: 1,204 | 2024: 1,388"


def test_header_cells_mark_the_header_even_over_numbers() -> None:
    table, _ = read_table(_html(("Rank", "1", "2"), cell="th") + _html(("Team", "Blues", "Flyers")))
    assert table.header == ("Rank", "1", "2")


def test_merged_cells_are_spread_and_empty_columns_dropped() -> None:
    html = (
        "<table><tr><th>Region</th><th></th><th>City</th><th>Stores</th></tr>"
        '<tr><td rowspan="2">North</td><td></td><td>Oslo</td><td>4</td></tr>'
        "<tr><td></td><td>Bergen</td><td>2</td></tr>"
        '<tr><td colspan="3">Total</td><td>6</td></tr></table>'
    )
    table, _ = read_table(html)
    assert table.header == ("Region", "City", "Stores")
    assert table.rows == (
        ("North", "Oslo", "4"),
        ("North", "Bergen", "2"),
        ("Total", "", "6"),
    )
    assert table.row_line(table.rows[2]) == "Region: Total | Stores: 6"


def test_caption_element_is_the_caption() -> None:
    html = "<table><caption>Prices 2024</caption>" + _html(("Item", "Price"), ("Tea", "3"))[7:]
    table, caption = read_table(html)
    assert caption == "Prices 2024"
    assert table.header == ("Item", "Price")


def test_header_alone_is_kept_as_a_row() -> None:
    table, _ = read_table(_html(("Name", "Room"), cell="th"))
    assert table == Table((), (("Name", "Room"),))


def test_grid_from_a_pdf_gets_the_same_header_rules() -> None:
    table, titles = table_from_grid([["Zone", "Carrier"], ["A", "PostNord"], ["", ""]])
    assert (table.header, table.rows, titles) == (("Zone", "Carrier"), (("A", "PostNord"),), [])
