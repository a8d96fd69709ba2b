"""What a user id is, and an org, role or override name: one definition for the hello, the
identity token's claims, the REST API's paths and the demo.

A name has 1 to 256 characters (code points), at least one of them not whitespace, and no
control character (Unicode Cc: U+0000 to U+001F, U+007F to U+009F), line or paragraph
separator (U+2028, U+2029) nor lone surrogate, which UTF-8, and so the databases, cannot
carry. Anything else goes: `/`, `%`, `?`, `#`,
spaces inside, any script. Names are opaque and compared exactly, never trimmed: leading or
trailing spaces are kept (identity providers' `sub` values are opaque strings too), so
`" alice"` and `"alice"` are two users, as they are to the site that chose them.

`NAME_PATTERN` is written so that a regular expression engine decides it in one pass: the
leading whitespace, the first other character and the rest are told apart by disjoint
classes, so no input makes it backtrack. It names no surrogate, which JSON Schema's engines
cannot even express: a lone surrogate never comes out of a JSON text msgspec decodes nor out
of a URL path uvicorn decodes, and `is_name` refuses one that a Python string carries (an
identity token's claims, which PyJWT decodes).
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

__all__ = ["MAX_NAME", "NAME_PATTERN", "NAME_WORDS", "Name", "is_name", "name_problem"]

MAX_NAME = 256
_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
NAME_PATTERN = rf"^[^\S{_CONTROL}]*[^\s{_CONTROL}][^{_CONTROL}]*$"
NAME_WORDS = "printable text, not blank"
"""What `NAME_PATTERN` asks for, in words (for error messages)."""

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)]
"""A name in a msgspec struct: decoding checks it, and its JSON schema says it."""

_MATCH = re.compile(NAME_PATTERN).match


def is_name(value: object) -> bool:
    """Whether `value` is a valid user id (or org, role or override name)."""
    if not (isinstance(value, str) and 1 <= len(value) <= MAX_NAME and _MATCH(value)):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def name_problem(value: object, what: str) -> str | None:
    """Why `value` is not a valid `what` ("user id", "org"...), in words; None if it is."""
    if is_name(value):
        return None
    return f"{what} must be {NAME_WORDS}, 1 to {MAX_NAME} characters without control characters"
