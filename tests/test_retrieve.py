import pytest

from rag.question import parse
from rag.retrieve import Filters, Retriever, as_langchain


@pytest.fixture(scope="module")
def retriever(backend):
    """Every test here runs on each backend (conftest.backend): local, milvus-lite, a Milvus server."""
    return backend


@pytest.mark.parametrize("question,case_id", [
    ("哪个区推出了“一楼一事办”？", "2021-10"),
    ("浦东人才港把审批时间压缩到了几天？", "2019-01"),
    ("住所云是干什么的", "2021-06"),
    ("汇商码", "2021-05"),
    ("花博人家的多址备案", "2021-20"),
])
def test_the_right_case_comes_first(retriever, question, case_id):
    assert retriever.search(question, k=5)[0].case.id == case_id


def test_results_are_grouped_by_case(retriever):
    hits = retriever.search("代办专员 首席代办", k=5)
    ids = [h.case.id for h in hits]
    assert len(ids) == len(set(ids))
    assert {"2021-12", "2022-e10"} <= set(ids[:3])
    assert all(h.chunks and h.sentences for h in hits)


def test_sentences_are_evidence_of_their_own(retriever):
    """The sentence that carries a detail ranks first in its case, though its chunk is about more."""
    best = retriever.case_evidence("2019-01", "外国高端人才来华工作居留审批压减到几天")[0]
    assert "5天" in best.sentence.text


def test_filters_from_the_question(retriever):
    assert Filters.from_query(parse("浦东和临港2022年度的做法")) == Filters(("浦东新区",), (2022,))
    assert Filters.from_query(parse("漕河泾开发区和静安区的做法")) == Filters(("徐汇区", "静安区"), ())
    hits = retriever.search("静安区在办税方面有什么做法？", k=5)
    assert hits[0].case.district == "静安区"


def test_explicit_filter_overrides_the_question(retriever):
    hits = retriever.search("静安区在办税方面有什么做法？", k=5, filters=Filters(("普陀区",)))
    assert hits[0].case.district == "普陀区"


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_each_mode_finds_a_named_programme(index, retriever, mode):
    r = Retriever(index, retriever.embedder, retriever.cfg, mode=mode, steer=False, store=retriever.store)
    assert r.search("“政银通”服务", k=3)[0].case.id == "2019-05"


def test_langchain_retriever_returns_documents_with_case_metadata(retriever):
    docs = as_langchain(retriever, k=3).invoke("哪个区推出了“一楼一事办”？")
    assert docs[0].metadata["case_id"] == "2021-10"
    assert docs[0].metadata["district"] == "虹口区"
    assert docs[0].page_content in open(retriever.cfg.seeds / docs[0].metadata["source"], encoding="utf-8").read() \
        or all(line in open(retriever.cfg.seeds / docs[0].metadata["source"], encoding="utf-8").read()
               for line in docs[0].page_content.split("\n"))
