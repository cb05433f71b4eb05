"""Dynamic blocks of the sequences' emails.

The mass-mailing editor restructures what it edits: it moves nodes, turns
snippets and columns into tables when it inlines the styles, and a browser
parsing ``<table><t t-foreach=...><tr>`` hoists the loop out of the table. A
QWeb loop written in the email body would not survive it. So the body never
holds the loops: a dynamic block is a placeholder,

    <div class="o_mail_snippet_general o_behavioral_block"
         data-behavioral-block="cart_lines" data-name="Cart lines">
        <div class="o_behavioral_block_content o_not_editable" contenteditable="false">
            ...a static preview, for the editor only...
        </div>
    </div>

that the editor moves, styles or deletes as one unit and cannot enter. When
the email is rendered, :func:`expand_blocks` replaces the preview inside the
content element by a ``t-call`` of the block's QWeb template (kept in the
addon's views, translated like any view): the loop lives there, out of the
editor's reach. Whatever the editor did to the wrapper (a table after style
inlining, padding, a background) is kept.

The functions here are pure (an HTML string in, an HTML string or a list of
problems out) so that any content holder (a step, a variant) can use them.
"""
import re

from lxml import etree, html

BLOCK_ATTRIBUTE = "data-behavioral-block"
BLOCK_CLASS = "o_behavioral_block"
CONTENT_CLASS = "o_behavioral_block_content"
# editor-only attributes dropped from the content element when expanded
EDITOR_ATTRIBUTES = ("contenteditable", "data-oe-protected")

_BLOCKS_XPATH = (
    f"//*[@{BLOCK_ATTRIBUTE} or contains(concat(' ', normalize-space(@class), ' '), ' {BLOCK_CLASS} ')]"
)
_CONTENT_XPATH = f".//*[contains(concat(' ', normalize-space(@class), ' '), ' {CONTENT_CLASS} ')]"
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def _parse(body):
    return html.fragment_fromstring(body, create_parent="div")


def _serialize(root):
    """The inner HTML of the ``<div>`` wrapper made by :func:`_parse`."""
    return html.tostring(root, encoding="unicode")[len("<div>"):-len("</div>")]


def has_blocks(body):
    return bool(body) and (BLOCK_ATTRIBUTE in body or BLOCK_CLASS in body)


def get_blocks(body):
    """The blocks of ``body``, in document order.

    :return list: dicts with ``kind`` (False when the block lost it),
        ``name`` (the label the editor shows), ``options`` (its ``data-*``
        settings) and ``has_content`` (whether its content element survived)
    """
    if not has_blocks(body):
        return []
    root = _parse(body)
    blocks = []
    for element in root.xpath(_BLOCKS_XPATH):
        kind = (element.get(BLOCK_ATTRIBUTE) or "").strip()
        blocks.append({
            "kind": kind or False,
            "name": element.get("data-name") or kind or False,
            "options": {
                key[5:]: value for key, value in element.attrib.items()
                if key.startswith("data-") and key not in (BLOCK_ATTRIBUTE, "data-name", "data-snippet")
            },
            "has_content": bool(element.xpath(_CONTENT_XPATH)),
            "nested": any(BLOCK_CLASS in (parent.get("class") or "") or parent.get(BLOCK_ATTRIBUTE)
                          for parent in element.iterancestors()),
        })
    return blocks


def get_block_problems(body, kinds):
    """What keeps the blocks of ``body`` from being rendered.

    :param dict kinds: {kind: label} of the known blocks
    :return list: (block label, problem) pairs; empty when all is well
    """
    problems = []
    for block in get_blocks(body):
        label = kinds.get(block["kind"]) or block["name"] or "?"
        if not block["kind"]:
            problems.append((label, "lost_kind"))
        elif not _KIND_RE.match(block["kind"]) or block["kind"] not in kinds:
            problems.append((label, "unknown"))
        elif block["nested"]:
            problems.append((label, "nested"))
        elif not block["has_content"]:
            problems.append((label, "lost_content"))
    return problems


def expand_blocks(body, templates, get_options=None):
    """Replace the blocks of ``body`` by calls of their QWeb templates.

    :param str body: HTML holding block placeholders (any other content, QWeb
        included, is left as it is)
    :param dict templates: {kind: xmlid of the QWeb template rendering it}
    :param callable get_options: (kind, {data-* settings}) -> {variable: python
        expression}, the values the template receives (``t-set``); the
        expressions must be built from validated values only
    :return str: the QWeb body; ``body`` itself when it has no block
    :raise ValueError: a block cannot be expanded (see :func:`get_block_problems`)
    """
    if not has_blocks(body):
        return body
    root = _parse(body)
    for element in root.xpath(_BLOCKS_XPATH):
        kind = (element.get(BLOCK_ATTRIBUTE) or "").strip()
        if kind not in templates:
            raise ValueError(f"unknown dynamic block {kind or element.get('data-name')!r}")
        contents = element.xpath(_CONTENT_XPATH)
        if not contents:
            raise ValueError(f"the dynamic block {kind!r} lost its content element")
        content = contents[0]
        for attribute in EDITOR_ATTRIBUTES:
            content.attrib.pop(attribute, None)
        for child in list(content):
            content.remove(child)
        content.text = None
        call = etree.SubElement(content, "t", {"t-call": templates[kind]})
        options = get_options(kind, {
            key[5:]: value for key, value in element.attrib.items() if key.startswith("data-")
        }) if get_options else {}
        for name, expression in options.items():
            etree.SubElement(call, "t", {"t-set": name, "t-value": expression})
    return _serialize(root)
