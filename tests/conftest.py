"""Shared fixtures: every test session gets its own RAG_HOME, so tests never touch a user's index.

The real model and the real index are built once per session, on the real seeds.
"""

import os

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
