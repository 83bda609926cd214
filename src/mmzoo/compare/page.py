"""``leaderboard.html``: one self-contained page (no network) with sortable tables and examples.

Everything is inline: CSS, a small script, and images as base64 data URIs, so the file
can be mailed or opened from a cluster's scratch disk. Clicking a header sorts its table
(numbers by their value, so ``0.51 ± 0.02`` sorts by 0.51; blanks last; a second click
reverses). ``leaderboard.html#sort=<table id>:<column>[:asc|desc]`` opens the page sorted
that way by clicking the header on load: a link can share a sorted view, and the browser
test uses it to click a header in headless Chromium without a remote-debugging client.
Table ids: ``group-<i>`` (the i-th evaluation-data group), ``ablation-<i>``, ``failed``,
``skipped``.

The side-by-side section shows, for the first ``k`` test images present in every
generative run's ``examples.jsonl``, each model's caption and answer beside the
reference. A line of ``examples.jsonl`` is ``{"key", "captions", "generated_captions",
"questions", "answers", "generated_answers", "image"?}`` (strings or lists of strings);
the image is ``image`` (relative to the run directory) or ``examples/<key>.png``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmzoo.compare.columns import columns
from mmzoo.compare.plots import row_name
from mmzoo.compare.records import Collection, Run
from mmzoo.compare.render import RULES, ablation_table, common_text, has_ablation
from mmzoo.compare.table import Group, Row

THUMBNAIL_PX = 128

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1800px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}h3{font-size:15px}
.note{color:#555;max-width:1000px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;margin:8px 0 16px}
th,td{border:1px solid #d0d0d0;padding:3px 7px;text-align:left;white-space:nowrap;vertical-align:top}
th{background:#f0f2f5;position:sticky;top:0}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th:hover{background:#e1e6ee}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.metric{font-variant-numeric:tabular-nums}td.blind{color:#777;font-variant-numeric:tabular-nums}
td.cost{color:#333;background:#fafafa}td.provenance{color:#555;font-size:12px}
td.flag{background:#fde2e1}td.best{background:#e3f4e1}
.example{display:flex;gap:14px;align-items:flex-start}
.examples td{white-space:normal;max-width:360px}
img.thumb{width:96px;image-rendering:pixelated;border:1px solid #ccc}
img.plot{max-width:100%;border:1px solid #eee}
"""

SCRIPT = """
function sortValue(td){
  const raw = td.dataset.sort !== undefined ? td.dataset.sort : td.textContent.trim();
  if (raw === '') return null;
  const m = raw.replace(/,/g, '').match(/^[-+]?(\\d+\\.?\\d*|\\.\\d+)(e[-+]?\\d+)?/i);
  return m ? parseFloat(m[0]) : raw.toLowerCase();
}
function sortBy(th){
  const table = th.closest('table'), body = table.tBodies[0];
  const col = Array.from(th.parentNode.children).indexOf(th);
  const rows = Array.from(body.rows);
  const numeric = rows.some(r => typeof sortValue(r.cells[col]) === 'number');
  const current = th.getAttribute('aria-sort');
  const dir = current ? (current === 'descending' ? 'ascending' : 'descending')
                      : (numeric ? 'descending' : 'ascending');
  const sign = dir === 'ascending' ? 1 : -1;
  rows.sort((a, b) => {
    const x = sortValue(a.cells[col]), y = sortValue(b.cells[col]);
    if (x === null || y === null) return (x === null) - (y === null);
    if (typeof x !== typeof y) return typeof x === 'number' ? -1 : 1;
    return sign * (x < y ? -1 : x > y ? 1 : 0);
  });
  rows.forEach(r => body.appendChild(r));
  th.parentNode.querySelectorAll('th').forEach(h => h.removeAttribute('aria-sort'));
  th.setAttribute('aria-sort', dir);
}
document.querySelectorAll('table.sortable th').forEach(th => th.addEventListener('click', () => sortBy(th)));
const wanted = decodeURIComponent(location.hash).match(/^#sort=([^:]+):(\\d+)(?::(asc|desc))?$/);
if (wanted) {
  const table = document.getElementById(wanted[1]);
  const th = table && table.tHead.rows[0].cells[Number(wanted[2])];
  if (th) {
    th.click();
    if (wanted[3] && !th.getAttribute('aria-sort').startsWith(wanted[3])) th.click();
  }
}
"""


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def data_uri(png: bytes, max_px: int | None = None) -> str:
    """A PNG as a ``data:`` URI, shrunk to ``max_px`` on its longer side when larger."""
    if max_px:
        from PIL import Image

        image = Image.open(io.BytesIO(png))
        if max(image.size) > max_px:
            image.thumbnail((max_px, max_px))
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            png = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(png).decode()


def sortable_table(table_id: str, header: Sequence[str], body: Sequence[Sequence[tuple[str, str, Any]]]) -> str:
    """``body`` cells are ``(text, css class, sort value or None)``."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    rows = []
    for cells in body:
        tds = []
        for text, css, key in cells:
            sort = f' data-sort="{_esc(key)}"' if isinstance(key, (int, float)) and not isinstance(key, bool) else ""
            tds.append(f'<td class="{css}"{sort}>{_esc(text)}</td>')
        rows.append("<tr>" + "".join(tds) + "</tr>")
    return (f'<div class="scroll"><table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _group_table(group: Group, table_id: str, all_metrics: bool = False) -> str:
    cols = columns(group, all_metrics)
    body = []
    for row in group.rows:
        cells = []
        for col in cols:
            text, css = col.cell(row), col.kind
            if col.name.startswith("beats") and text.startswith("NO"):
                css = "check flag"
            elif col.kind == "metric" and col.name in row.blind_failures:  # does not beat its blind self
                css = "metric flag"
            elif col.name.startswith("vs best") and text == "best":
                css = "check best"
            cells.append((text, css, next(iter(col.raw(row).values()), None)))
        body.append(cells)
    return sortable_table(table_id, [c.name for c in cols], body)


# ---- side by side -----------------------------------------------------------------------


def read_examples(run_dir: Path) -> dict[str, dict[str, Any]]:
    """``examples.jsonl`` by key, in file order; unreadable lines are left out."""
    path = run_dir / "examples.jsonl"
    examples: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return examples
    for line in path.read_text(errors="replace").splitlines():
        try:
            example = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(example, dict) and example.get("key") is not None:
            examples.setdefault(str(example["key"]), example)
    return examples


def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _image(run: Run, key: str, example: dict[str, Any]) -> bytes | None:
    rel = example.get("image") or f"examples/{key}.png"
    path = (run.path / str(rel)).resolve()
    if run.path.resolve() not in path.parents or not path.is_file():  # stay inside the run directory
        return None
    return path.read_bytes()


def side_by_side(group: Group, k: int = 6) -> str:
    """HTML comparing generative rows on the first ``k`` keys common to all their examples."""
    generative: list[tuple[Row, dict[str, dict[str, Any]]]] = []
    for row in group.rows:
        examples = read_examples(row.first.path)
        if any("generated_captions" in e or "generated_answers" in e for e in examples.values()):
            generative.append((row, examples))
    if not generative:
        return ""
    keys = [key for key in generative[0][1] if all(key in ex for _, ex in generative)][:k]
    if not keys:
        return "<p class='note'>The generative runs of this group share no example keys.</p>"
    blocks = []
    for key in keys:
        reference = generative[0][1][key]
        image = next((png for row, ex in generative if (png := _image(row.first, key, ex[key]))), None)
        thumb = f'<img class="thumb" alt="{_esc(key)}" src="{data_uri(image, THUMBNAIL_PX)}">' if image else ""
        questions = " / ".join(_texts(reference.get("questions")))
        lines = [f"<tr><th>reference</th><td>{_esc(' / '.join(_texts(reference.get('captions'))))}</td>"
                 f"<td>{_esc(' / '.join(_texts(reference.get('answers'))))}</td></tr>"]
        for row, examples in generative:
            example = examples[key]
            asked = " / ".join(_texts(example.get("questions")))
            note = f" <small>(asked: {_esc(asked)})</small>" if asked and asked != questions else ""
            name = f"{row_name(row, group)} (seed {row.first.seed})"
            lines.append(f"<tr><th>{_esc(name)}</th><td>{_esc(' / '.join(_texts(example.get('generated_captions'))))}</td>"
                         f"<td>{_esc(' / '.join(_texts(example.get('generated_answers'))))}{note}</td></tr>")
        blocks.append(
            f"<h3>{_esc(key)}</h3><div class='example'>{thumb}<table class='examples'><thead><tr><th></th>"
            f"<th>caption</th><th>answer to: {_esc(questions)}</th></tr></thead><tbody>{''.join(lines)}"
            "</tbody></table></div>"
        )
    return "".join(blocks)


# ---- the page -----------------------------------------------------------------------------


def to_html(
    collection: Collection, groups: Sequence[Group], images: dict[str, Path], k: int = 6, all_metrics: bool = False
) -> str:
    """The page; ``images`` maps ``"leaderboard"`` and ``"ablation-<i>"`` to PNG files to inline.
    Tables show each group's headline metrics, or every metric with ``all_metrics``."""
    rules = re.sub(r"`([^`]+)`", r"<code>\1</code>", re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", _esc(RULES)))
    parts = [f"<h1>mmzoo leaderboard</h1><p class='note'>{rules}</p>"]
    parts.append(
        f"<p>{len(collection.runs)} runs, {sum(len(g.rows) for g in groups)} configurations, "
        f"{len(groups)} group(s) of one task and evaluation data; {len(collection.failed)} failed, "
        f"{len(collection.skipped)} skipped. Click a header to sort.</p>"
    )
    for i, group in enumerate(groups):
        parts.append(f"<h2>{_esc(group.title)}</h2>")
        if group.ranked:
            parts.append(f"<p class='note'>Ranked by <code>{_esc(group.metric)}</code>.</p>")
        if group.common:
            parts.append(f"<p class='note'>Every row also sets <code>{_esc(common_text(group))}</code>.</p>")
        parts.append(_group_table(group, f"group-{i}", all_metrics))
        if has_ablation(group):
            header, body = ablation_table(group)
            parts.append(f"<h3>Ablation over {_esc(', '.join(group.swept))}</h3>")
            parts.append(sortable_table(f"ablation-{i}", header, [[(c, "metric", None) for c in r] for r in body]))
            if f"ablation-{i}" in images:
                src = data_uri(images[f"ablation-{i}"].read_bytes())
                parts.append(f'<img class="plot" alt="ablation plot" src="{src}">')
        examples = side_by_side(group, k)
        if examples:
            parts.append(f"<h3>Side by side: the first {k} test images common to the generative runs</h3>{examples}")
    if "leaderboard" in images:
        src = data_uri(images["leaderboard"].read_bytes())
        parts.append(f'<h2>Ranking metric per configuration</h2><img class="plot" alt="leaderboard plot" src="{src}">')
    if collection.failed:
        body = [[(r.name, "", None), (r.model, "", None), (r.label, "", None), (r.error, "flag", None)]
                for r in collection.failed]
        parts.append("<h2>Failed runs</h2>" + sortable_table("failed", ["run", "model", "config", "reason"], body))
    if collection.skipped:
        body = [[(s.name, "", None), (s.reason, "", None)] for s in collection.skipped]
        parts.append("<h2>Skipped run directories</h2>" + sortable_table("skipped", ["run", "reason"], body))
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>mmzoo leaderboard</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}<script>{SCRIPT}</script></body></html>\n"
    )
