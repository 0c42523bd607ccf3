"""Escaping user text for each output format, and safe file names.

* **Markdown**: :func:`md_text` HTML-escapes ``& < >`` (Markdown renderers pass raw HTML through)
  and backslash-escapes the characters that make inline Markdown syntax (emphasis, code,
  links and images, table cells, strike-through), and folds newlines, so user text is shown as
  typed and never becomes markup. User text is only ever placed after other text on a line, so
  line-start syntax (headings, lists) cannot arise.
* **CSV**: :func:`csv_cell` neutralizes spreadsheet formulas: a text cell that starts with
  ``=``, ``+``, ``-``, ``@``, a tab or a carriage return (and is not a plain number) gets a
  leading ``'``, so a spreadsheet shows it as text instead of evaluating it (OWASP's "CSV
  injection" rule). Numbers are written as numbers.
* **File names**: :func:`safe_name` keeps letters, digits, ``.``, ``_`` and ``-``; anything else
  (``/``, ``..`` at the start, spaces) is replaced and a short hash of the original keeps two
  different ids apart, so an example id can never name a path outside the report folder.

HTML is escaped by Jinja2's autoescaping and pandas' ``to_html(escape=True)``.
"""

from __future__ import annotations

import hashlib
import html
import re
from typing import Any

_MD_SPECIAL = re.compile(r"([\\`*\[\]|~])")
# an underscore between two letters or digits cannot start emphasis (CommonMark): base_value stays
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def md_text(value: Any) -> str:
    """User text safe to place anywhere in a Markdown line (tables included)."""
    text = str(value).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    text = html.escape(text, quote=False)
    return _MD_UNDERSCORE.sub(r"\\_", _MD_SPECIAL.sub(r"\\\1", text))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_cell(value: Any) -> Any:
    """A cell value safe from spreadsheet formula evaluation (non-text values unchanged)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _is_number(value.strip()):
        return "'" + value
    return value


def safe_name(value: Any, limit: int = 80) -> str:
    """A file-name-safe form of ``value`` (an example id), unique per distinct value."""
    text = str(value)
    safe = _UNSAFE.sub("_", text).lstrip(".")[:limit]
    if safe == text and safe:
        return safe
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{safe or 'example'}-{digest}"
