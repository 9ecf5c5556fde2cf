"""The search box's text: the CLI's query language on one line, and its editing.

`dog on a beach + sunset - 0.5:./blurry.jpg` is `query "dog on a beach" --add sunset --sub
0.5:./blurry.jpg`: words up to the first `+` or `-` (or `--add`/`-a`, `--sub`/`-s`) form one
term, and each operator starts the next one.  Double quotes keep a term's spaces and operators
(`"/photos/2019 - Rome/a.jpg"`); inside them a backslash escapes `"` and `\\`.  A dangling
operator (`cat +`, while the user is still typing) is ignored.  The text is what the URL
carries (`/?q=...`), so a refined search can be bookmarked.
"""

from __future__ import annotations

from dataclasses import dataclass

OPERATORS = {"+": 1, "--add": 1, "-a": 1, "-": -1, "--sub": -1, "-s": -1}


@dataclass(frozen=True)
class QueryTerm:
    """One term as typed (`2:cat`, `/photos/a.jpg`), with the sign of its operator."""

    sign: int
    text: str


def parse(line: str) -> list[QueryTerm]:
    terms: list[QueryTerm] = []
    sign, words = 1, []
    for token, quoted in _tokens(line):
        if not quoted and token in OPERATORS:
            if words:
                terms.append(QueryTerm(sign, " ".join(words)))
            sign, words = OPERATORS[token], []
        else:
            words.append(token)
    if words:
        terms.append(QueryTerm(sign, " ".join(words)))
    return terms


def _tokens(line: str) -> list[tuple[str, bool]]:
    """Whitespace-separated tokens; quotes group, and an unclosed quote runs to the end."""
    tokens: list[tuple[str, bool]] = []
    current: list[str] = []
    quoted = in_quotes = False
    chars = iter(line)
    for ch in chars:
        if in_quotes and ch == "\\":
            current.append(next(chars, "\\"))
        elif ch == '"':
            in_quotes, quoted = not in_quotes, True
        elif ch.isspace() and not in_quotes:
            if current or quoted:
                tokens.append(("".join(current), quoted))
            current, quoted = [], False
        else:
            current.append(ch)
    if current or quoted:
        tokens.append(("".join(current), quoted))
    return tokens


def format_terms(terms: list[QueryTerm]) -> str:
    parts: list[str] = []
    for n, term in enumerate(terms):
        if n or term.sign < 0:
            parts.append("+" if term.sign > 0 else "-")
        parts.append(quote(term.text))
    return " ".join(parts)


def quote(text: str) -> str:
    """The text as one term: bare when it reads back the same, else in double quotes."""
    words = text.split()
    plain = (
        " ".join(words) == text
        and not any(w in OPERATORS for w in words)
        and '"' not in text
        and text != ""
    )
    if plain:
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_for_search(terms: list[QueryTerm]) -> tuple[list[str], list[str], list[str]]:
    """(terms, add, sub) for `Library.search`: the first positive term leads."""
    positive = [t.text for t in terms if t.sign > 0]
    negative = [t.text for t in terms if t.sign < 0]
    return positive[:1], positive[1:], negative


def refine(line: str, text: str, sign: int) -> str:
    """The query with `text` added as a positive or negative term (relevance feedback);
    an earlier occurrence of the same term goes, so a photo is never both more and less."""
    kept = [t for t in parse(line) if t.text != text]
    return format_terms([*kept, QueryTerm(sign, text)])


def without(line: str, index: int) -> str:
    """The query with its `index`-th term removed (a chip's ×)."""
    terms = parse(line)
    return format_terms(terms[:index] + terms[index + 1 :])
