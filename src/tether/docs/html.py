"""The runbook as one self-contained HTML page, rendered from its Markdown with markdown-it-py.

The page loads nothing: the stylesheet is inline, there is no script, and a Content-Security-Policy meta tag
forbids everything else (``default-src 'none'``), allowing only that one stylesheet by its hash, so the page
is safe to open from a file, a wiki attachment or a ticket. Raw HTML in the Markdown is shown as text
(``html: False``): config text is escaped already, and a team note cannot inject markup either. Headings get
the ids GitHub gives them, so the contents' links work in both renderings.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Sequence

from markdown_it import MarkdownIt
from markdown_it.token import Token

from tether.docs._text import slug

__all__ = ["CSS", "heading_slugs", "parse", "render_html"]

CSS = """
:root { color-scheme: light dark; --fg: #1f2328; --bg: #ffffff; --muted: #59636e; --line: #d1d9e0; --code: #f6f8fa; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --line: #3d444d; --code: #151b23; }
}
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.55 -apple-system, BlinkMacSystemFont, "Segoe UI", Helvetica, Arial, sans-serif; }
main { max-width: 62rem; margin: 0 auto; padding: 2rem 1.25rem 4rem; }
h1, h2, h3, h4 { line-height: 1.25; margin: 1.6em 0 0.6em; }
h1 { font-size: 2rem; }
h2 { font-size: 1.5rem; border-bottom: 1px solid var(--line); padding-bottom: 0.3em; }
h3 { font-size: 1.2rem; }
h4 { font-size: 1rem; }
a { color: #0969da; }
code { font: 0.88em/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--code);
  padding: 0.1em 0.35em; border-radius: 4px; overflow-wrap: anywhere; }
pre { background: var(--code); padding: 0.8em 1em; border-radius: 6px; overflow-x: auto; }
pre code { padding: 0; background: none; }
blockquote { margin: 0; padding: 0 1em; color: var(--muted); border-left: 0.25em solid var(--line); }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid var(--line); padding: 0.3em 0.7em; text-align: left; vertical-align: top; }
ul { padding-left: 1.5em; }
li + li { margin-top: 0.2em; }
@media print { main { max-width: none; } a { color: inherit; } }
""".lstrip()

_COMMENT = re.compile(r"^\s*<!--(?:(?!-->).)*-->\s*$")
_POLICY = "default-src 'none'; style-src '{style}'; img-src data:; base-uri 'none'; form-action 'none'"


def parse(markdown: str) -> list[Token]:
    """The Markdown's tokens as the page renders them: comment lines blanked out, headings with ids."""
    parser = _parser()
    tokens = parser.parse(_without_comments(markdown))
    for token, anchor in heading_slugs(tokens):
        token.attrSet("id", anchor)
    return tokens


def heading_slugs(tokens: Sequence[Token]) -> list[tuple[Token, str]]:
    """Every ``heading_open`` token with the anchor GitHub would give it, in document order."""
    seen: dict[str, int] = {}
    result = []
    for index, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        inline = tokens[index + 1]
        words = "".join(child.content for child in inline.children or () if child.type in ("text", "code_inline"))
        result.append((token, slug(words, seen)))
    return result


def render_html(markdown: str, *, title: str = "Integration runbook") -> str:
    """A complete HTML document for ``markdown``, needing no other file and no network."""
    parser = _parser()
    body = parser.renderer.render(parse(markdown), parser.options, {})
    digest = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
    policy = _POLICY.format(style=f"sha256-{digest}")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n'
        "<head>\n"
        '<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="tether docs">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>{CSS}</style>\n"
        "</head>\n"
        "<body>\n<main>\n"
        f"{body}"
        "</main>\n</body>\n</html>\n"
    )


def _parser() -> MarkdownIt:
    # CommonMark plus tables; no raw HTML, no linkify, no typographer: text renders exactly as written.
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def _without_comments(markdown: str) -> str:
    # A line that is one HTML comment (the banner, the team-notes markers) is invisible on GitHub; blank it
    # here too, rather than remove it, so block structure and line numbers stay those of the Markdown.
    return "\n".join("" if _COMMENT.match(line) else line for line in markdown.split("\n"))
