"""HTML building blocks: escaping, number formats, tables, the page."""

import math

from dxaspine.html_page import ci_text, fmt, mean_sd_text, render_page, table


def test_numbers_format_and_missing_values_show_a_dash():
    assert fmt(0.12345, 3) == "0.123" and fmt("0.5", 1) == "0.5"
    assert fmt(None) == fmt(math.nan) == fmt("") == fmt(math.inf) == "–"
    assert mean_sd_text({"mean": 0.97, "sd": 0.011}, 3) == "0.970 (0.011)"
    assert mean_sd_text({"mean": None, "sd": None}) == "–"
    assert ci_text([0.1, 0.2], 2) == "[0.10, 0.20]" and ci_text(None) == ci_text([1, None]) == "–"


def test_tables_escape_cells_and_say_when_the_cohort_is_simulated():
    text = table("a <caption>", ["h&"], [["<td>", "0.5"], ["x", "–"]], True, "note <b>")
    assert "a &lt;caption&gt;" in text and "<th>h&amp;</th>" in text
    assert "<td>&lt;td&gt;</td>" in text and '<td class="num">0.5</td>' in text
    assert '<td class="num">–</td>' in text and "note &lt;b&gt;" in text
    assert "[simulated cohort]</span></caption>" in text
    assert "[simulated cohort]" not in table("c", ["h"], [["1"]], False)


def test_the_page_carries_the_banner_only_when_simulated():
    page = render_page("T <1>", "<p>body</p>", "all simulated & so on")
    assert page.startswith("<!DOCTYPE html>") and "<title>T &lt;1&gt;</title>" in page
    assert '<body data-simulated="true">' in page and "all simulated &amp; so on" in page
    assert "<p>body</p>" in page and "data-images" in page
    plain = render_page("T", "", None)
    assert '<body data-simulated="false">' in plain and "Simulated cohort" not in plain
