"""A generated document a student edits: the report's Markdown, with a place per section for the
student's own discussion between two markers, kept whenever the document is written again.

    <!-- discussion Q3 -->
    what the student wrote
    <!-- end of discussion Q3 -->

The markers are read leniently (spaces and case may vary). Whatever else the student wrote, anywhere in
the document and whatever the markers look like, is found by comparing the document with the version the
toolkit last wrote (kept beside it): it is never dropped, but moved to the end of the new document and
named in a warning.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from itertools import accumulate

DISCUSSION = "<!-- discussion {id} -->\n{text}\n<!-- end of discussion {id} -->"
PLACEHOLDER = "_Your discussion: {prompt}._"  # what a section's discussion holds until the student writes it
DEFAULT_PROMPT = "what the figures show, why, and what you would try next"
BLOCK = re.compile(
    r"(?si)<!--\s*discussion\s+(?P<id>[^\s>]+?)\s*-->[ \t]*\n(?P<text>.*?)\n?[ \t]*"
    r"<!--\s*end\s+of\s+discussion\s+(?P=id)\s*-->"
)
KEPT_TITLE = "## Text kept from the previous version"


@dataclass
class Previous:
    """What the student wrote in the document: discussions by section id, and text found elsewhere."""

    discussions: dict[str, str] = field(default_factory=dict)
    elsewhere: list[str] = field(default_factory=list)  # paragraphs outside every well-formed discussion

    def warnings(self) -> list[str]:
        if not self.elsewhere:
            return []
        first = self.elsewhere[0].strip().splitlines()[0][:60]
        return [
            f"warning: kept {len(self.elsewhere)} passage(s) you wrote outside the discussion markers (e.g. "
            f"{first!r}): moved to the end of the report, under '{KEPT_TITLE[3:]}'"
        ]


def discussion(section_id: str, text: str | None, prompt: str = DEFAULT_PROMPT) -> str:
    """A section's discussion: what the student wrote, or the placeholder that says what to write."""
    kept = text if text is not None and not is_placeholder(text) else PLACEHOLDER.format(prompt=prompt)
    return DISCUSSION.format(id=section_id, text=kept)


def is_placeholder(text: str) -> bool:
    """Whether a discussion still holds the toolkit's placeholder (of any prompt)."""
    return bool(re.fullmatch(r"_Your discussion: [^\n]*\._", text.strip()))


def read_previous(current: str | None, generated: str | None) -> Previous:
    """The student's text in ``current`` (the document as it is now), against ``generated`` (as the
    toolkit last wrote it; None when unknown, e.g. a report of an earlier version)."""
    if not current:
        return Previous()
    found = Previous({m["id"]: m["text"] for m in BLOCK.finditer(current)})
    if generated is None:
        return found
    inside = [range(m.start(), m.end()) for m in BLOCK.finditer(current)]
    found.elsewhere = _added_outside(current, generated, inside)
    kept_before = current.split(KEPT_TITLE, 1)[1].split("\n## ", 1)[0].strip() if KEPT_TITLE in current else ""
    if kept_before:  # text already moved to the end by an earlier call stays there, once
        found.elsewhere = [kept_before, *[p for p in found.elsewhere if p not in kept_before]]
    return found


def _added_outside(current: str, generated: str, inside: list[range]) -> list[str]:
    """Runs of lines that are in ``current`` but not in ``generated``, outside the discussion blocks."""
    ours, theirs = generated.splitlines(keepends=True), current.splitlines(keepends=True)
    offsets = [0, *accumulate(len(line) for line in theirs)]
    passages: list[str] = []
    for tag, _, _, j1, j2 in difflib.SequenceMatcher(a=ours, b=theirs, autojunk=False).get_opcodes():
        if tag not in ("insert", "replace"):
            continue
        outside = [theirs[j] for j in range(j1, j2) if not any(offsets[j] in block for block in inside)]
        text = "".join(line for line in outside if not _generated_looking(line)).strip()
        if text and not is_placeholder(text) and text not in KEPT_TITLE:
            passages.append(text)
    return passages


def _generated_looking(line: str) -> bool:
    """A line of the toolkit's own kind that changed between versions (a marker, the kept section's title)."""
    stripped = line.strip()
    marker = bool(re.fullmatch(r"<!--.*-->", stripped)) and "discussion" not in stripped
    return stripped.startswith(KEPT_TITLE) or marker


def kept_text(previous: Previous, section_ids: list[str]) -> list[str]:
    """The end of the new document: discussions of sections no longer there, and text found elsewhere."""
    parts: list[str] = []
    orphans = {k: v for k, v in previous.discussions.items() if k not in section_ids and not is_placeholder(v)}
    if orphans:
        parts += ["", "## Discussions of sections not in this report", ""]
        parts += [discussion(key, text) + "\n" for key, text in orphans.items()]
    if previous.elsewhere:
        parts += ["", KEPT_TITLE, "", "\n\n".join(previous.elsewhere)]
    return parts
