"""Downloads of records as JSON lines (the feedback and audit exports): sent a page at a
time as they are read, so an export of any size holds one page in memory."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import StreamingResponse

from api.schemas import ErrorOut
from rag.retrieval.filters import parse_when

NDJSON = "application/x-ndjson"
_PAGE = 1000  # records a piece of the response

SinceQuery = Annotated[
    str | None,
    Query(
        max_length=40,
        description="Only those at or after this ISO 8601 date or time (UTC unless it says).",
    ),
]


def since_moment(since: str | None) -> datetime | None:
    """The moment a `since` parameter names (None for all); InvalidInput if it names none."""
    return parse_when(since) if since is not None else None


def export_responses(description: str) -> dict[int | str, dict[str, Any]]:
    """What OpenAPI says of an admin's JSON-lines export: `description` of its lines, and
    its errors (not an admin; a `since` that is no date)."""
    return {
        200: {"content": {NDJSON: {}}, "description": description},
        403: {"model": ErrorOut},
        422: {"model": ErrorOut},
    }


def ndjson_download(records: Iterable[dict[str, Any]], filename: str) -> StreamingResponse:
    """`records` as an attachment named `filename`, one JSON object a line.

    The first page is read now, so that a store that cannot be read is answered as an
    error, not as a download cut short.
    """
    pages = _pages(records)
    first = next(pages, "")
    return StreamingResponse(
        itertools.chain([first], pages),
        media_type=NDJSON,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _pages(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    lines = (json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    while page := "".join(itertools.islice(lines, _PAGE)):
        yield page
