"""The contract suites' shared fixtures: real models and servers for the integration tier."""

from __future__ import annotations

from tests.servers import chroma_server as chroma_server
from tests.servers import database_url as database_url
from tests.servers import llama_server as llama_server
from tests.servers import models_dir as models_dir
from tests.servers import postgres_server as postgres_server
from tests.servers import redis_server as redis_server
from tests.servers import redis_url as redis_url
