"""The chat's look: an offline theme and the stylesheet for the HTML that ui.render builds."""

import gradio as gr

# Fonts the machine already has, CJK faces first: nothing is fetched for them, and Chinese text
# is drawn by a Chinese face instead of falling through a Latin web font.
SANS = ["PingFang SC", "Hiragino Sans GB", "Microsoft YaHei", "Noto Sans CJK SC", "Source Han Sans SC",
        "WenQuanYi Micro Hei", "Segoe UI", "Helvetica Neue", "Arial", "sans-serif"]
MONO = ["SFMono-Regular", "Menlo", "Consolas", "DejaVu Sans Mono", "Liberation Mono", "monospace"]


def theme() -> gr.themes.Base:
    return gr.themes.Default(primary_hue="blue", font=SANS, font_mono=MONO)


CSS = """
.app-header { display: flex; align-items: baseline; gap: .8em; flex-wrap: wrap; margin: 0 0 .2em; }
.app-header h1 { font-size: 1.5em; margin: 0; }
.app-header .scope { color: var(--body-text-color-subdued); font-size: 1.05em; }
table.settings, table.settings tr { border: none; border-collapse: collapse; font-size: .92em; }
table.settings th, table.settings td { border: none; border-bottom: 1px solid var(--border-color-primary);
  padding: .35em 1.2em .35em 0; text-align: left; vertical-align: top; background: none; }
table.settings th { font-weight: 700; white-space: nowrap; color: var(--body-text-color-subdued); }
.app-hint { color: var(--body-text-color-subdued); font-size: .9em; margin: 0; }

.answer .line { margin: .15em 0; line-height: 1.7; }
.answer .line.lead { font-weight: 700; }
.answer .line.bullet { padding-left: 1.1em; text-indent: -1.1em; }
.answer .line.bullet::before { content: "•"; display: inline-block; width: 1.1em; text-indent: 0; }
.answer .typing { color: var(--body-text-color-subdued); font-size: .9em; }

sup.cite {
  display: inline-block; min-width: 1.5em; padding: 0 .35em; margin: 0 .15em; border-radius: .75em;
  background: var(--color-accent); color: white; font-size: .7em; line-height: 1.5;
  text-align: center; text-indent: 0; font-weight: 700; vertical-align: super;
}
.source-head sup.cite { vertical-align: baseline; margin-left: 0; margin-right: .4em; }

.sources, .related { margin-top: .8em; padding-top: .5em; border-top: 1px solid var(--border-color-primary); }
.panel-title { font-weight: 700; font-size: .9em; color: var(--body-text-color-subdued); margin-bottom: .3em; }
.sources ol, .related ul { margin: 0; padding-left: 0; list-style: none; }
.sources li.source { margin: .55em 0; }
.source-head { font-size: .9em; }
.source-head .district, .related .district { font-weight: 700; }
code.loc { font-size: .85em; padding: 0 .3em; border-radius: 3px; background: var(--background-fill-secondary); }
blockquote.quote {
  margin: .3em 0 .2em; padding: .3em .7em; border-left: 3px solid var(--color-accent);
  background: var(--background-fill-secondary); font-size: .9em; line-height: 1.65;
}
.answer mark { background: #fde68a; color: #1f2937; padding: 0 .1em; border-radius: 2px; }
details.context { font-size: .85em; }
details.context summary { cursor: pointer; color: var(--color-accent); }
details.context .ctx { max-height: 22em; overflow-y: auto; margin-top: .3em; padding: .3em .5em;
  border: 1px solid var(--border-color-primary); border-radius: 4px; }
.ctx-line { display: flex; gap: .6em; line-height: 1.6; }
.ctx-line .ln { flex: 0 0 3em; text-align: right; color: var(--body-text-color-subdued);
  font-family: var(--font-mono); font-size: .9em; }
.ctx-line.hit { background: var(--color-accent-soft); }

.answer.not-found {
  border: 1px dashed #d97706; background: rgba(251, 191, 36, .12); border-radius: 6px; padding: .5em .8em;
}
.answer.not-found .nf-title { color: #b45309; font-weight: 700; font-size: .9em; }
.related li { margin: .3em 0; font-size: .9em; }
.related li::before { content: "→ "; color: var(--body-text-color-subdued); }
"""
