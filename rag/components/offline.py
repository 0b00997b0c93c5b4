"""Make the libraries we load behave offline, whatever the environment says.

Called once by every entry point before a model or store is built. Setting these
after `transformers` or `chromadb` was imported still works for the checks they make
at load time, which is when they would reach for the network.
"""

from __future__ import annotations

import os

_OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # unstructured's language detection and its NLTK/spaCy data must never be fetched.
    "UNSTRUCTURED_DISABLE_ANALYTICS": "1",
    "SCARF_NO_ANALYTICS": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
}


def force_offline() -> None:
    """Set the environment variables that keep Hugging Face, Chroma and unstructured offline."""
    for key, value in _OFFLINE_ENV.items():
        os.environ[key] = value
