"""Outside text made plain inside Markdown: one place, so every page and the data label escape alike."""

from __future__ import annotations

import re

# Characters that start Markdown or Streamlit markup anywhere in a line: emphasis, code, links and
# images, HTML, $math$, ~strike~, tables, :color[...] and :material/...: directives, headings.
_MARKUP = re.compile(r"([\\`*_\[\]<>$~|:#])")
# ... and only at the start of a line: lists, numbered lists, quotes.
_BULLET, _NUMBER = re.compile(r"^([-+=>])"), re.compile(r"^(\d+)([.)])")
# Bare addresses (http://..., www...., name@host) become links even with every character escaped: GFM finds
# them in the text after escapes are read. A word joiner (U+2060, invisible and zero-width) where their
# patterns need two characters side by side keeps them text.
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\.)|(?=@)", re.IGNORECASE)


def plain(text: object) -> str:
    """Text from outside (file names, cells of an uploaded file) made safe to show inside Markdown.

    Why: st.error, st.warning and st.markdown render Markdown, so a results file whose cell reads
    "[click](http://…)" or ":red[…]" would otherwise draw a link or coloured text of its choosing.
    The escapes (and the word joiners that keep bare addresses from becoming links) are invisible once
    rendered; the text becomes one line.
    """
    escaped = _AUTOLINK.sub("\u2060", _MARKUP.sub(r"\\\1", " ".join(str(text).split())))
    return _NUMBER.sub(r"\1\\\2", _BULLET.sub(r"\\\1", escaped))
