"""`lore docs`: list, show and delete indexed documents (as `/v1/documents` does)."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.components import open_lore, read_settings, record
from api.cli.options import CollectionOption, JsonOption
from api.cli.output import print_json

app = typer.Typer(help="List, show and delete indexed documents.", no_args_is_help=True)

DocIdArgument = Annotated[
    str, typer.Argument(help="The document id, as `lore docs list` shows it.")
]


@app.command("list")
def docs_list(collection: CollectionOption = None, as_json: JsonOption = False) -> None:
    """List the documents in a collection, with their status and chunk counts."""
    from api.presenters import document_json
    from ingest.documents import list_documents

    settings = read_settings()
    target = collection or settings.collection
    with open_lore(settings) as lore:
        documents = list_documents(lore, target)
    if as_json:
        print_json([document_json(d, admin=True) for d in documents])
        return
    for doc in documents:
        where = doc.sources[0] if doc.sources else "(no source)"
        more = f" (+{len(doc.sources) - 1} more)" if len(doc.sources) > 1 else ""
        problem = f"  {doc.error_code}: {doc.error}" if doc.error else ""
        typer.echo(f"{doc.doc_id}  {doc.status:8s} {doc.chunks:5d} chunks  {where}{more}{problem}")


@app.command("show")
def docs_show(doc_id: DocIdArgument, collection: CollectionOption = None) -> None:
    """Show one document's record and its chunks, as JSON (as `GET /v1/documents/{id}`)."""
    from api.presenters import document_detail_json
    from ingest.documents import document_detail

    settings = read_settings()
    target = collection or settings.collection
    with open_lore(settings) as lore:
        detail = document_detail(lore, target, doc_id)
    print_json(document_detail_json(detail, admin=True))


@app.command("delete")
def docs_delete(
    doc_id: DocIdArgument, collection: CollectionOption = None, as_json: JsonOption = False
) -> None:
    """Remove a document, all of its chunks and, if it was uploaded, its uploaded file."""
    from api.presenters import deleted_json
    from ingest.documents import remove_document

    settings = read_settings()
    target = collection or settings.collection
    with open_lore(settings) as lore:
        removed = remove_document(lore, target, doc_id)
        record(lore, "documents.delete", target, doc_ids=[doc_id])
    if as_json:
        print_json(deleted_json(removed, admin=True))
        return
    typer.echo(f"Deleted {doc_id}: {removed.chunks} chunks.")
