"""Shared fixtures: every test session gets its own RAG_HOME, so tests never touch a user's index.

The real model and the real index are built once per session, on the real seeds.
"""

import os
import socket
from contextlib import contextmanager

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
