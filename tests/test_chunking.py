from rag.config import REPO_SEEDS
from rag.chunking import chunk_cases, split_sentences
from rag.corpus import case_text, clean, load_cases, read_lines

import pytest


@pytest.fixture(scope="module")
def cases():
    return load_cases(REPO_SEEDS)


@pytest.mark.parametrize("size", [150, 300, 400])
def test_no_text_is_lost_and_no_chunk_crosses_a_case(cases, size):
    chunks = chunk_cases(cases, REPO_SEEDS, size)
    covered: dict[tuple[str, int], str] = {}
    for ch in chunks:
        assert ch.case.lines[0] <= ch.lines[0] <= ch.lines[1] <= ch.case.lines[1]
        assert len(ch.text.replace("\n", "")) <= size
        for s in ch.sentences:
            line = read_lines(REPO_SEEDS / ch.case.source)[s.line - 1]
            assert s.text in line  # exact source text, so citations can quote it
            covered[(ch.case.id, s.line)] = covered.get((ch.case.id, s.line), "") + s.text
    for case in cases:
        lines = read_lines(REPO_SEEDS / case.source)
        for n in range(case.lines[0], case.lines[1] + 1):
            text = clean(lines[n - 1])
            if text:
                assert covered.get((case.id, n), "").replace(" ", "") == text.replace(" ", ""), (case.id, n)


def test_chunks_carry_context_for_search(cases):
    chunks = chunk_cases(cases, REPO_SEEDS, 300)
    ch = next(c for c in chunks if c.case.id == "2021-12" and "代办专员" in c.text)
    assert ch.index_text.startswith("2021年 · 宝山区 · 代办专员 代办服务制度")
    assert ch.text in case_text(ch.case, REPO_SEEDS) or all(s.text in case_text(ch.case, REPO_SEEDS) for s in ch.sentences)
    # Bare headings never stand alone as a chunk.
    assert not [c for c in chunks if all(s.heading and len(s.text) <= 12 for s in c.sentences)]


def test_unknown_district_shows_in_context(cases):
    chunks = chunk_cases(cases, REPO_SEEDS, 300)
    ch = next(c for c in chunks if c.case.id == "2022-g08")
    assert ch.index_text.startswith("2022年 · “益”企助企")


def test_long_sentences_are_split_at_commas_then_cut():
    text = "甲" * 50 + "，" + "乙" * 50 + "。" + "丙" * 130 + "。"
    parts = split_sentences(text, 60)
    assert "".join(parts) == text
    assert all(len(p) <= 60 for p in parts)
