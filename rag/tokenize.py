"""Chinese keyword tokens for BM25: jieba, taught the corpus's own names so they stay whole."""

from __future__ import annotations

import os
import re
from pathlib import Path

import jieba
import platformdirs

from rag.corpus import DISTRICTS, GAZETTEER

# Quoted programme names such as “一楼一事办”, “住所云”, “汇商码”.
QUOTED = re.compile(r"[“\"]([^”\"“]{2,10})[”\"]")
WORD = re.compile(r"[\w]", re.UNICODE)
STOPWORDS = set("的 了 在 是 和 与 及 等 对 为 将 把 被 从 以 也 都 就 而 或 并 其 该 这 那 有 个 中 上 下 "
                "哪个 哪些 什么 怎么 如何 吗 呢 啊 请问 一下 里 做 搞 过 它 它们 他们 这个 那个 这些 那些 "
                "啥 咋 呀 吧".split())
jieba.setLogLevel(60)  # jieba prints its dictionary loading to stderr otherwise


def user_words(texts: list[str]) -> list[str]:
    """District names, short forms, places and every quoted term in the corpus."""
    words = set(DISTRICTS) | set(GAZETTEER)
    for text in texts:
        words.update(m.group(1).strip() for m in QUOTED.finditer(text))
    return sorted({w.lower() for w in words if w and " " not in w})


def default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("policy-case-qa")) / "jieba"


def private_dir(path: Path) -> str | None:
    """`path`, created if need be, when only this user can write to it."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except OSError:
        return None
    return str(path) if st.st_uid == os.getuid() and not st.st_mode & 0o022 else None


class Tokenizer:
    def __init__(self, words: list[str], cache_dir: Path | None = None):
        self.words = words
        self._jieba = jieba.Tokenizer()
        # jieba keeps its prefix dictionary (built from dict.txt in ~2 s) as a marshal file, by
        # default in the system temp dir, where anyone could plant one. Ours goes to a directory of
        # this user's alone (the index passes RAG_HOME/cache), or there is no cache at all.
        self._jieba.tmp_dir = private_dir(Path(cache_dir or default_cache_dir()))
        if self._jieba.tmp_dir is None:
            self._jieba.FREQ, self._jieba.total = self._jieba.gen_pfdict(self._jieba.get_dict_file())
            self._jieba.initialized = True
        for w in words:
            self._jieba.add_word(w, freq=200_000)

    @classmethod
    def load(cls, path: Path, cache_dir: Path | None = None) -> "Tokenizer":
        return cls(path.read_text(encoding="utf-8").split("\n"), cache_dir)

    def save(self, path: Path) -> None:
        path.write_text("\n".join(self.words), encoding="utf-8")

    def is_word(self, token: str) -> bool:
        """In jieba's dictionary: "好评率", "解封" are words; "楼有", "这是" are seams of the search cut."""
        self._jieba.check_initialized()
        return self._jieba.FREQ.get(token, 0) > 0

    def __call__(self, text: str) -> list[str]:
        tokens = self._jieba.lcut_for_search(text.lower())
        return [t for t in tokens if WORD.search(t) and t not in STOPWORDS]
