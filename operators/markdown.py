"""The markdown of the operators' result views, with the names users gave (labels, tags, field, run and dataset
names, file paths) shown as they wrote them.

The App renders a result view as markdown (CommonMark with GitHub's extensions), so a label ``**x**`` showed in
bold, ``[a](b)`` as a link and ``<b>`` as markup. :func:`escape` makes text of the user's plain text in markdown,
:func:`code` puts a name in a code span whatever it holds, and :func:`report` builds a result view.
"""

import re

#: markdown's markup characters (emphasis, code, links and images, HTML and entities, GitHub's strikethrough and
#: tables, headings, e-mail autolinks): each escaped with a backslash
_MARKUP = re.compile(r"[\\`*\[\]<>&~|#!@]")
#: ``_`` opens or closes emphasis unless it sits between two letters or digits (``ground_truth`` stays as written)
_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")
#: GitHub's autolinks of bare URLs: ``http://...``, ``www....``
_AUTOLINK = re.compile(r"(?i)(?<=[a-z]):(?=//)|(?<![^\W_])(www)\.")


def escape(text):
    """``text`` (plain text: a sentence naming labels, tags, fields) as markdown that renders as the text itself:
    markup characters escaped, line breaks made spaces (a new line could start a list item or a heading). The
    punctuation of ordinary sentences (parentheses, quotes, ``:``, ``-``, an underscore inside a word) is kept."""
    text = " ".join(str(text).splitlines())
    text = _MARKUP.sub(r"\\\g<0>", text)
    text = _UNDERSCORE.sub(r"\\_", text)
    return _AUTOLINK.sub(lambda m: f"{m.group(1)}\\." if m.group(1) else "\\:", text)


def code(text):
    """``text`` (a field, run or file name) as a markdown code span, which shows any character as it is: the fence
    is one backtick longer than the longest run of backticks in it (padded with a space when it starts or ends
    with one); line breaks become spaces."""
    text = " ".join(str(text).splitlines())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


class Markdown(str):
    """Text that is markdown already (its user text escaped, e.g. a warning with the form's hint in code spans):
    :func:`report` shows it as it is where it would escape plain text."""


#: the facts of a result view whose values are plain text (the SDK's warnings: sentences that name labels, tags
#: and fields as the user wrote them), escaped by :func:`report` unless they are :class:`Markdown`
PLAIN_FACTS = ("warning",)


def report(headline, facts=(), next_steps=()):
    """Markdown of a result view: a headline, ``(what, value)`` facts and next steps (markdown, with user names
    put in by :func:`code` or :func:`escape`; the values of :data:`PLAIN_FACTS` are plain text, escaped here)."""
    lines = [f"**{headline}**", ""]
    lines += [f"- {what}: {_value(what, value)}" for what, value in facts if value not in (None, "")]
    if next_steps:
        lines += ["", "**Next**", ""] + [f"- {step}" for step in next_steps]
    return "\n".join(lines)


def _value(what, value):
    return escape(value) if what in PLAIN_FACTS and not isinstance(value, Markdown) else value
