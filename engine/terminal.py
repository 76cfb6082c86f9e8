"""Text for a terminal from strings users sent: shown as they are, never interpreted.

Ids, kinds, traits and reasons come from the outside. Printed through rich with its defaults,
`[/]` in a customer id is markup (and a crash), `:smile:` an emoji, and an ANSI escape or a
newline in an id reaches the terminal as a command or a fake line. So every console here has
markup, emoji and highlighting off, and every line passes through `shown`, which writes
control and other unprintable characters as Python escapes (`\\x1b`, `\\n`, `\\u202e`).
Styling is done with rich Text spans, never with markup in strings.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text


def shown(value: Any) -> str:
    """A value as text whose every character is printable: unprintable ones as escapes."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def console_for(stderr: bool = False) -> Console:
    # soft_wrap: a long line is left to the terminal, so an id is never split by an inserted newline.
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=True)


def line(*parts: Any) -> Text:
    """One line of output from parts: strings (shown as they are) or (text, style) pairs."""
    out = Text(no_wrap=True)
    for part in parts:
        if isinstance(part, tuple):
            out.append(shown(part[0]), style=part[1])
        else:
            out.append(shown(part))
    return out


def cell(value: Any) -> Text:
    """A table cell (rich would read a plain string cell as markup)."""
    return Text(shown(value))
