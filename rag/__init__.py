"""Lore's core library: settings, the model catalogue, components, retrieval and answers.

Imports point down this list:

    container.py    the one composition root: builds every component from settings
    evaluation.py   offline evaluation of retrieval and answers
    answering/      the answer use case: prompts, answer text, injection detection
    governance/     API keys and access rules, the audit log, feedback
    retrieval/      the retriever, filters, the document manifest, evidence, translation
    components/     vendors and engines behind our interfaces: embedders, generators,
                    the vector and keyword stores, SQLite
    config.py, errors.py, types.py, models.py
                    settings, domain errors, plain data, the model catalogue

`answering` and `governance` do not import each other. This package imports nothing
from `ingest` or `api`, and has no HTTP and no CLI.
"""
