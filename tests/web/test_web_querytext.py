"""The search box's query language: the CLI's terms on one line, and editing them."""

from __future__ import annotations

import pytest

from clipsearch.web.querytext import (
    QueryTerm,
    format_terms,
    parse,
    quote,
    refine,
    split_for_search,
    without,
)


@pytest.mark.parametrize(
    ("line", "terms"),
    [
        ("", []),
        ("   ", []),
        ("dog on a beach", [(1, "dog on a beach")]),
        ("piggy bank + toys - coins", [(1, "piggy bank"), (1, "toys"), (-1, "coins")]),
        ("finance --add toys -s 0.5:coins", [(1, "finance"), (1, "toys"), (-1, "0.5:coins")]),
        ("2:cat + 0.5:./cat.jpg", [(1, "2:cat"), (1, "0.5:./cat.jpg")]),
        ("- people", [(-1, "people")]),
        ("cat +", [(1, "cat")]),  # still typing
        ("cat + - dog", [(1, "cat"), (-1, "dog")]),
        ('"/p/2019 - Rome/a.jpg"', [(1, "/p/2019 - Rome/a.jpg")]),
        ('a "+" b', [(1, "a + b")]),
        ('say "he said \\"hi\\""', [(1, 'say he said "hi"')]),
        ('"unclosed - quote', [(1, "unclosed - quote")]),
        ("dog's toy", [(1, "dog's toy")]),
        ("non-stop -coins", [(1, "non-stop -coins")]),
        ('""', [(1, "")]),
    ],
)
def test_parse(line, terms):
    assert [(t.sign, t.text) for t in parse(line)] == terms


@pytest.mark.parametrize(
    "text",
    [
        "cat",
        "dog on a beach",
        "/p/2019 - Rome/a.jpg",
        "a  b",
        'quote " in',
        "back\\slash",
        "+",
        "--add",
        " lead",
        "trail ",
        "x\ty",
        "café 東京",
    ],
)
def test_quote_round_trips(text):
    line = format_terms([QueryTerm(1, "cat"), QueryTerm(-1, text), QueryTerm(1, text)])
    assert parse(line) == [QueryTerm(1, "cat"), QueryTerm(-1, text), QueryTerm(1, text)]


def test_plain_terms_stay_plain():
    assert quote("dog on a beach") == "dog on a beach"
    assert quote("/photos/IMG_0001.jpg") == "/photos/IMG_0001.jpg"
    assert format_terms(parse("finance --add toys -s coins")) == "finance + toys - coins"
    assert format_terms(parse("- people + dog")) == "- people + dog"


def test_split_for_search_matches_the_cli():
    assert split_for_search(parse("piggy bank + toys - coins")) == (
        ["piggy bank"],
        ["toys"],
        ["coins"],
    )
    assert split_for_search(parse("- people + dog")) == (["dog"], [], ["people"])
    assert split_for_search(parse("- people")) == ([], [], ["people"])


def test_refine_adds_once_and_flips_sign():
    q = refine("red car", "/p/a b.jpg", 1)
    assert q == "red car + /p/a b.jpg"
    assert refine(q, "/p/a b.jpg", 1) == q
    assert refine(q, "/p/a b.jpg", -1) == "red car - /p/a b.jpg"
    assert refine("", "/p/x.jpg", -1) == "- /p/x.jpg"
    assert refine("red car", "/p/2019 - Rome.jpg", 1) == 'red car + "/p/2019 - Rome.jpg"'


def test_without_removes_one_chip():
    q = "red car + toys - coins"
    assert without(q, 0) == "toys - coins"
    assert without(q, 1) == "red car - coins"
    assert without(q, 2) == "red car + toys"
    assert without("cat", 0) == ""
