"""Shared fixtures: every test session gets its own RAG_HOME, so tests never touch a user's index.

The real model and the real index are built once per session, on the real seeds.
"""

import os
import socket
from contextlib import contextmanager
from dataclasses import replace

import pytest

from rag.config import Config


@pytest.fixture(scope="session")
def cfg(tmp_path_factory):
    home = tmp_path_factory.mktemp("rag-home")
    os.environ["RAG_HOME"] = str(home)
    return Config.from_env()


@pytest.fixture(scope="session")
def chain(cfg):
    from rag.chain import build

    return build(cfg, progress=False)


@pytest.fixture(scope="session")
def index(chain):
    return chain.answerer.retriever.index


SERVER = ("http://", "https://")
NO_SERVER = ("RAG_MILVUS_URI names no Milvus server; to run these tests against one: "
             "RAG_MILVUS_URI=http://host:19530 RAG_MILVUS_TOKEN=user:password .venv/bin/pytest tests/test_milvus.py tests/test_retrieve.py")


def milvus_store(index, cfg, uri: str, progress: bool = False):
    from rag.milvus import open_store

    return open_store(replace(cfg, store="milvus", milvus_uri=uri), index, progress)


@pytest.fixture(scope="session")
def lite_store(index, cfg, tmp_path_factory):
    """The session's index in milvus-lite, embedded, in a file of its own."""
    return milvus_store(index, cfg, str(tmp_path_factory.mktemp("milvus") / "rag.db"))


@pytest.fixture(scope="session")
def server_uri():
    uri = os.environ.get("RAG_MILVUS_URI", "")
    if not uri.startswith(SERVER):
        pytest.skip(NO_SERVER)
    return uri


@pytest.fixture(scope="session")
def server_store(index, cfg, server_uri):
    return milvus_store(index, cfg, server_uri)


@pytest.fixture(scope="module", params=("local", "milvus-lite", "milvus-server"))
def backend(request, chain):
    """The session's Retriever on each backend: a test that asks for it runs on all three (the
    server's run skips unless RAG_MILVUS_URI names one)."""
    from rag.retrieve import Retriever

    base = chain.answerer.retriever
    if request.param == "local":
        return base
    store = request.getfixturevalue("lite_store" if request.param == "milvus-lite" else "server_store")
    return Retriever(base.index, base.embedder, store.cfg, store=store)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def chat_server(chain, cfg, **launch):
    """The chat on a free loopback port, in this process, sharing the session's chain."""
    from ui.app import build_app

    demo = build_app(chain, cfg)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), **launch)
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture(scope="session")
def server(chain, cfg):
    with chat_server(chain, cfg) as url:
        yield url
