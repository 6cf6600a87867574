"""A small document model written out as Markdown and as standalone HTML.

The report is built once as a list of blocks and rendered twice, so the two files always
say the same thing (no Markdown-to-HTML dependency).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


@dataclass
class Doc:
    """Blocks of a document: headings, paragraphs, tables, images, links and code."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def para(self, text: str) -> None:
        """A paragraph; ``code`` and **bold** spans are kept in both outputs."""
        self.blocks.append(("para", text))

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", (headers, [[str(c) for c in row] for row in rows])))

    def image(self, alt: str, src: str) -> None:
        self.blocks.append(("image", (alt, src)))

    def links(self, items: list[tuple[str, str]]) -> None:
        """A bullet list of ``(label, href)``."""
        self.blocks.append(("links", items))

    def bullets(self, items: list[str]) -> None:
        self.blocks.append(("bullets", items))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, body in self.blocks:
            if kind == "heading":
                out += [f"{'#' * body[0]} {body[1]}", ""]
            elif kind == "para":
                out += [body, ""]
            elif kind == "table":
                headers, rows = body
                out.append("| " + " | ".join(headers) + " |")
                out.append("|" + "|".join("---" for _ in headers) + "|")
                out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
                out.append("")
            elif kind == "image":
                out += [f"![{body[0]}]({body[1]})", ""]
            elif kind == "links":
                out += [f"- [{label}]({href})" for label, href in body] + [""]
            elif kind == "bullets":
                out += [f"- {item}" for item in body] + [""]
            elif kind == "code":
                out += ["```bash", body, "```", ""]
        return "\n".join(out)

    def html(self) -> str:
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for kind, body in self.blocks:
            if kind == "heading":
                parts.append(f"<h{body[0]}>{html.escape(body[1])}</h{body[0]}>")
            elif kind == "para":
                parts.append(f"<p>{_inline(body)}</p>")
            elif kind == "table":
                headers, rows = body
                head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
                cells = "".join(
                    "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows
                )
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
            elif kind == "image":
                parts.append(f"<img alt='{html.escape(body[0])}' src='{html.escape(body[1])}'>")
            elif kind == "links":
                items = "".join(
                    f"<li><a href='{html.escape(href)}'>{html.escape(label)}</a></li>" for label, href in body
                )
                parts.append(f"<ul>{items}</ul>")
            elif kind == "bullets":
                parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in body) + "</ul>")
            elif kind == "code":
                parts.append(f"<pre><code>{html.escape(body)}</code></pre>")
        parts.append("</body></html>")
        return "\n".join(parts)


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = _CODE.sub(r"<code>\1</code>", text)
    return _BOLD.sub(r"<strong>\1</strong>", text)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f3f3f3}img{max-width:100%;border:1px solid #ddd;margin:.5em 0}"
    "pre{background:#f6f8fa;padding:1em;overflow-x:auto}code{background:#f6f8fa}"
)
