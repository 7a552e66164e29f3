"""A "复制为 Markdown" button under each answer: the answer with its citations written out, for
pasting into a report (district · case · collection · file:line · quote).

The Markdown travels beside the button in a hidden <pre> (escaped like any other text: the
chat's sanitizer drops data-* attributes but keeps classes); one document-level listener, loaded
through the page's <head>, copies it on click.
"""

from __future__ import annotations

from html import escape

from rag.answer import NO_DISTRICT, Answer

LABEL = "复制为 Markdown"


def file_line(source: str, lines) -> str:
    a, b = lines
    return f"seeds/{source}:{a}" if a == b else f"seeds/{source}:{a}-{b}"


def where(c) -> str:
    """An ingested file's own place (第3页第12行), else the seeds file and line."""
    return c.location if c.location and not c.location.startswith("seeds/") else file_line(c.source, c.lines)


def markdown(answer: Answer) -> str:
    out = [f"**问：** {answer.question}", "", answer.answer.strip(), ""]
    if answer.citations:
        out.append("**来源：**")
        out += [f"{c.n}. {c.district or NO_DISTRICT} · 《{c.case_title}》 · {c.collection}（{c.year}年） · "
                f"`{where(c)}` · “{c.quote}”" for c in answer.citations]
    if answer.related:
        out.append("**可能相关：**")
        out += [f"- {r['district'] or NO_DISTRICT} · 《{r['case_title']}》 · {r['collection']}（{r['year']}年） · "
                f"`{file_line(r['source'], r['lines'])}`" for r in answer.related]
    return "\n".join(out).strip() + "\n"


def button(answer: Answer) -> str:
    return (f'<div class="copy-row"><button type="button" class="copy-md" title="连同出处复制，可直接粘贴到报告中">'
            f'{LABEL}</button><pre class="copy-src">{escape(markdown(answer))}</pre></div>')


# navigator.clipboard needs a secure context (https or the loopback address); elsewhere, e.g. a
# LAN address without TLS, the older execCommand path still copies.
HEAD = """<script>
document.addEventListener('click', async (event) => {
  const button = event.target.closest && event.target.closest('button.copy-md');
  if (!button) return;
  const text = button.parentElement.querySelector('pre.copy-src').textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {
    const area = document.createElement('textarea');
    area.value = text;
    document.body.appendChild(area);
    area.select();
    document.execCommand('copy');
    area.remove();
  }
  button.textContent = '已复制';
  setTimeout(() => { button.textContent = '%s'; }, 1500);
});
</script>""" % LABEL

CSS = """
.copy-row { margin-top: .5em; }
pre.copy-src { display: none; }
button.copy-md { font-size: .8em; padding: .15em .7em; border-radius: 4px; cursor: pointer;
  border: 1px solid var(--border-color-primary); background: var(--background-fill-secondary);
  color: var(--body-text-color-subdued); }
button.copy-md:hover { color: var(--color-accent); border-color: var(--color-accent); }
"""
