"""The page shell: one self-contained HTML file (inline CSS, PNGs as data URIs, no external URL at all)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Sequence
from typing import Any

from nnopt.report._format import fmt_number

_SCHEME = re.compile(r"(h)(t)(tp)", re.IGNORECASE)
_B64_SCHEME = re.compile(r"(h)(ttp)", re.IGNORECASE)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d232a;
background:#f6f7f9;line-height:1.45}
main{max-width:1240px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.2em;margin:28px 0 10px;border-bottom:1px solid #dde1e6;
padding-bottom:4px}
.sub{color:#5b6570;margin:0 0 18px}
.question{background:#fff;border-left:4px solid #1f77b4;padding:10px 16px;margin:16px 0;font-size:1.05em}
.verdict{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:6px 18px 6px 34px;margin:0}
.verdict li{margin:6px 0}
table{border-collapse:collapse;background:#fff;font-size:.92em;margin:6px 0}
th,td{border:1px solid #dde1e6;padding:5px 10px;text-align:right;white-space:nowrap}
th{background:#eef1f4;font-weight:600}td.l,th.l{text-align:left}
tr.bad td{color:#a33}tr.kept td{font-weight:600;background:#fff8e1}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:6px;vertical-align:-1px}
img{max-width:100%;height:auto;background:#fff;border:1px solid #dde1e6;border-radius:4px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;background:#fff;border:1px solid #dde1e6;
border-radius:6px;padding:12px 16px;margin:0}
dt{color:#5b6570}dd{margin:0}
details{margin-top:10px}summary{cursor:pointer;color:#1f4e79}
.note{color:#5b6570;font-size:.9em}
footer{color:#7a848e;font-size:.85em;margin-top:36px}
"""


def esc(value: Any) -> str:
    """HTML-escape text; a literal 'http' in user text becomes 'h&#116;tp' so the file names no URL."""
    text = html.escape("" if value is None else str(value), quote=True)
    return _SCHEME.sub(lambda m: f"{m.group(1)}&#{ord(m.group(2))};{m.group(3)}", text)


def img(png: bytes, alt: str) -> str:
    """The PNG as a data URI, wrapped at 76 columns; line breaks also split any 'http' inside the base64
    (URL parsers drop newlines from attribute values, so browsers decode the same bytes)."""
    encoded = base64.b64encode(png).decode("ascii")
    wrapped = "\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
    wrapped = _B64_SCHEME.sub(lambda m: f"{m.group(1)}\n{m.group(2)}", wrapped)
    return f'<img src="data:image/png;base64,{wrapped}" alt="{esc(alt)}">'


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1,
          row_classes: Sequence[str] | None = None, raw_columns: Sequence[int] = ()) -> str:
    """A table; the first `left` columns are left-aligned, cells in `raw_columns` are trusted HTML."""
    head = "".join(f'<th{" class=l" if i < left else ""}>{esc(h)}</th>' for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        cells = "".join(f'<td{" class=l" if i < left else ""}>{c if i in raw_columns else esc(c)}</td>'
                        for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def swatch(color: str, name: str) -> str:
    return f'<span class="sw" style="background:{esc(color)}"></span>{esc(name)}'


def definitions(items: Iterable[tuple[str, Any]]) -> str:
    """A key/value list; items whose value is None or empty are left out."""
    cells = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items if v not in (None, "", []))
    return f"<dl>{cells}</dl>"


def page(title: str, subtitle: str, question: str, sections: Sequence[str], footer: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            f"<h1>{esc(title)}</h1>\n<p class=\"sub\">{esc(subtitle)}</p>\n"
            f"<div class=\"question\"><strong>Question:</strong> {esc(question)}</div>\n"
            + "\n".join(sections)
            + f"\n<footer>{esc(footer)}</footer>\n</main>\n</body>\n</html>\n")


def section(heading: str, body: str) -> str:
    return f"<section>\n<h2>{esc(heading)}</h2>\n{body}\n</section>"


def data_description(config: dict[str, Any]) -> str | None:
    """'digits (classification): 1,258 train / 269 val / 270 test, 64 features, 10 classes'."""
    info = config.get("data_info") if isinstance(config.get("data_info"), dict) else {}
    name = info.get("name") or config.get("data")
    if name is None:
        return None
    parts = []
    sizes = [f"{fmt_number(info[k])} {k[2:]}" for k in ("n_train", "n_val", "n_test") if info.get(k) is not None]
    if sizes:
        parts.append(" / ".join(sizes))
    if info.get("n_features") is not None:
        parts.append(f"{fmt_number(info['n_features'])} features")
    if info.get("n_classes"):
        parts.append(f"{fmt_number(info['n_classes'])} classes")
    task = info.get("task") or config.get("task")
    head = f"{name} ({task})" if task else str(name)
    return head + (": " + ", ".join(parts) if parts else "")


def model_description(config: dict[str, Any]) -> str | None:
    model = config.get("model")
    n_params = config.get("n_params")
    if model is None and n_params is None:
        return None
    text = str(model) if model is not None else "model"
    if n_params is not None:
        text += f" ({fmt_number(n_params)} parameters)"
    return text


def environment_description(config: dict[str, Any]) -> str | None:
    env = config.get("environment")
    if not isinstance(env, dict) or not env:
        return None
    parts = [f"{k} {env[k]}" for k in ("python", "torch", "nnopt") if env.get(k)]
    if env.get("platform"):
        parts.append(str(env["platform"]))
    if env.get("cpu_count"):
        parts.append(f"{env['cpu_count']} CPUs")
    if env.get("threads_per_run"):
        parts.append(f"{env['threads_per_run']} thread(s) per run")
    return ", ".join(parts)
