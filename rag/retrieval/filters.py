"""Metadata filters: which documents a search may draw passages from.

A filter looks at what the manifest records for each source of a document:

- `sources`: the source's name, the one readers see (`policies/2024/leave.pdf`, or an
  upload's file name), and, when the filter's `paths` allows (admins, the command
  line), its path on the server. A pattern with `*`, `?` or `[...]` is a glob (`*`
  also crosses folders); one without is an exact name or path, or a folder
  (everything under it). A pattern that does not start with `/` may match at any
  folder boundary, so `reports/*.pdf` matches the name `2024/reports/q3.pdf` and the
  path `/srv/docs/reports/q3.pdf`; one that does is anchored at the top of the
  collection's names (`/policies` is not `old/policies`) and of the server's paths.
- `types`: the file extension of the path, without the dot and in any case (`pdf`,
  `md`). The extension is what ingest picked the reader by; no MIME type is recorded.
- `since`/`until`: the file's modification time as recorded at ingest (for an upload,
  when it was uploaded), both ends inclusive.

Values of one kind are alternatives (any may match); kinds combine (all must match,
on the same source). A document stored under several paths passes when one of them
does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from rag.errors import InvalidInput

_EXTENSION = re.compile(r"^[a-z0-9][a-z0-9_+-]{0,15}$")
_WILDCARD = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Filters:
    """Conditions on a passage's document; the empty filter lets everything through.

    Build one with `make_filters`, which checks and normalises the values.
    """

    sources: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    # Whether `sources` may match server paths as well as names: not for a caller who
    # is not to know the server's paths, who could otherwise probe for them.
    paths: bool = True

    def __bool__(self) -> bool:
        return bool(self.sources or self.types or self.since or self.until)


def parse_when(value: str, *, end_of_day: bool = False) -> datetime:
    """An ISO 8601 date or date-time as an aware datetime; no time zone means UTC.

    A bare date means the start of that day, or with `end_of_day` its last microsecond,
    so `until=2024-03-31` includes the whole of 31 March.
    """
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time.max if end_of_day else time.min)
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"'{value}' is not a date; use ISO 8601, such as 2024-03-31 or 2024-03-31T18:00:00Z."
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def make_filters(
    sources: Iterable[str] = (),
    types: Iterable[str] = (),
    since: str | None = None,
    until: str | None = None,
    *,
    paths: bool = True,
) -> Filters:
    """Checked, normalised filters from the values a person typed; InvalidInput if wrong.

    Source patterns match names, and server paths too unless `paths` is false.
    """
    patterns = tuple(s.strip() for s in sources)
    if any(not p for p in patterns):
        raise InvalidInput("A source filter is empty; give a path, a folder or a glob.")
    extensions = []
    for given in types:
        extension = given.strip().lower().removeprefix(".")
        if not _EXTENSION.match(extension):
            raise InvalidInput(
                f"'{given}' is not a file type; give an extension such as pdf, docx or md."
            )
        extensions.append(extension)
    start = parse_when(since) if since else None
    end = parse_when(until, end_of_day=True) if until else None
    if start and end and start > end:
        raise InvalidInput(f"The date range is empty: since {since} is after until {until}.")
    return Filters(
        tuple(dict.fromkeys(patterns)), tuple(dict.fromkeys(extensions)), start, end, paths
    )


def _literal_glob(text: str) -> str:
    """`text` as a SQLite GLOB pattern that matches only itself."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def _anchored_globs(pattern: str) -> list[str]:
    """GLOB patterns for what `pattern` selects, matched from the start of a path."""
    if _WILDCARD.search(pattern):
        return [pattern]
    folder = pattern.rstrip("/")
    return [_literal_glob(folder), _literal_glob(folder) + "/*"]


def source_globs(pattern: str) -> list[str]:
    """SQLite GLOB patterns that together match the server paths `pattern` selects."""
    globs = _anchored_globs(pattern)
    if pattern.startswith("/"):
        return globs
    return ["*/" + g for g in globs]


def name_globs(pattern: str) -> list[str]:
    """SQLite GLOB patterns that together match the source names `pattern` selects.

    Names are relative (`policies/2024/leave.pdf`): a leading `/` anchors the pattern
    at their start, and without one it may also start at any folder boundary.
    """
    inner = pattern.lstrip("/")
    if not inner:  # "/": the top of the collection, so every name
        return ["*"]
    globs = _anchored_globs(inner)
    if pattern.startswith("/"):
        return globs
    return globs + ["*/" + g for g in globs]


def epoch_microseconds(moment: datetime) -> int:
    """A datetime as whole microseconds since the epoch (any year fits in 64 bits)."""
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
