"""HTML forms as a browser submits them: which form, and which fields it sends. Pure: no I/O.

A browser sends a form's named, enabled controls: text-like inputs and hidden ones (CSRF
tokens) with their values, checked checkboxes and radios ("on" without a value), the selected
options of a select (the first option of a single select when none is), textareas, and the one
submit button that was clicked. File inputs, reset and plain buttons are never sent.
"""

from __future__ import annotations

from collections.abc import Mapping

from selectolax.lexbor import LexborHTMLParser, LexborNode

#: Input types that are buttons: sent only when they are the one clicked.
_CLICKABLE = frozenset({"submit", "image"})
_NEVER_SENT = frozenset({"reset", "button", "file"})


def find_form(
    tree: LexborHTMLParser,
    *,
    css: str | None = None,
    id: str | None = None,
    name: str | None = None,
    number: int = 0,
) -> LexborNode:
    """The form chosen by `css`, else `id`, else `name`, else its `number` on the page. A
    ValueError that lists the page's forms when there is no such form."""
    forms = tree.css("form")
    found: LexborNode | None = None
    if css is not None:
        found = next((node for node in tree.css(css) if node.tag == "form"), None)
        wanted = f"matching {css!r}"
    elif id is not None:
        found = next((f for f in forms if f.attributes.get("id") == id), None)
        wanted = f"with id {id!r}"
    elif name is not None:
        found = next((f for f in forms if f.attributes.get("name") == name), None)
        wanted = f"named {name!r}"
    else:
        found = forms[number] if 0 <= number < len(forms) else None
        wanted = f"number {number}"
    if found is None:
        listed = "; ".join(describe(form, n) for n, form in enumerate(forms)) or "none"
        raise ValueError(f"no form {wanted} on the page (its forms: {listed})")
    return found


def describe(form: LexborNode, number: int) -> str:
    """A one-line description of a form, for error messages."""
    attributes = form.attributes
    names = [str(n) for n in (c.attributes.get("name") for c in _controls(form)) if n]
    parts = [f"#{number}"]
    parts += [f"{key}={attributes[key]!r}" for key in ("id", "name") if attributes.get(key)]
    method = (attributes.get("method") or "GET").upper()
    parts.append(f"{method} {attributes.get('action') or '(this page)'}")
    parts.append(f"fields {', '.join(names) or '-'}")
    return " ".join(parts)


def form_fields(
    form: LexborNode, *, clickdata: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """The (name, value) pairs a browser would send for `form`, in document order, with the
    first submit button clicked, or the one whose attributes all match `clickdata` (a ValueError
    when none does)."""
    fields: list[tuple[str, str]] = []
    buttons: list[LexborNode] = []
    for control in _controls(form):
        attributes = control.attributes
        if "disabled" in attributes:
            continue
        name = attributes.get("name")
        kind = (attributes.get("type") or "").lower()
        if control.tag == "button" or (control.tag == "input" and kind in _CLICKABLE):
            if control.tag != "button" or kind in ("", "submit"):
                buttons.append(control)
            continue
        if not name or kind in _NEVER_SENT:
            continue
        if control.tag == "select":
            fields += [(name, value) for value in _selected(control)]
        elif control.tag == "textarea":
            fields.append((name, control.text(deep=True)))
        elif kind in ("checkbox", "radio"):
            if "checked" in attributes:
                fields.append((name, attributes.get("value") or "on"))
        else:
            fields.append((name, attributes.get("value") or ""))
    clicked = _clicked(buttons, clickdata)
    if clicked is not None and clicked.attributes.get("name"):
        fields.append((str(clicked.attributes["name"]), clicked.attributes.get("value") or ""))
    return fields


def _controls(form: LexborNode) -> list[LexborNode]:
    return form.css("input, select, textarea, button")


def _selected(select: LexborNode) -> list[str]:
    options = select.css("option")
    chosen = [o for o in options if "selected" in o.attributes]
    if not chosen and options and "multiple" not in select.attributes:
        chosen = options[:1]
    return [_option_value(o) for o in chosen]


def _option_value(option: LexborNode) -> str:
    value = option.attributes.get("value")
    return value if value is not None else option.text(deep=True).strip()


def _clicked(buttons: list[LexborNode], clickdata: Mapping[str, str] | None) -> LexborNode | None:
    if not clickdata:
        return buttons[0] if buttons else None
    for button in buttons:
        if all(button.attributes.get(key) == value for key, value in clickdata.items()):
            return button
    described = [dict(button.attributes) for button in buttons]
    raise ValueError(f"no submit button matches {dict(clickdata)!r} (the form's: {described})")
