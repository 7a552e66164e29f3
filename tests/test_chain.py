"""The one chain: invoke and stream, follow-ups, bad input, and LLM mode's citation checks."""

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from rag.answer import Answer
from rag.chain import AnswerChain, BadQuestion
from rag.llm import verify


def test_stream_yields_text_then_the_answer(chain):
    pieces = list(chain.stream({"question": "哪个区推出了“一楼一事办”？"}))
    answer = pieces[-1]
    assert isinstance(answer, Answer)
    assert all(isinstance(p, str) for p in pieces[:-1])
    assert "".join(pieces[:-1]).strip() == answer.answer
    assert chain.invoke({"question": "哪个区推出了“一楼一事办”？"}).to_dict() == answer.to_dict()


def after(chain, question: str) -> list[dict]:
    """A chat history holding one turn: the question and the chain's real answer."""
    return [{"role": "user", "content": question},
            {"role": "assistant", "content": chain.invoke({"question": question}).answer}]


def test_follow_up_swaps_the_district(chain):
    a = chain.invoke({"question": "那普陀区呢？", "history": after(chain, "静安区在办税方面有什么做法？")})
    assert a.answerable and a.districts[0] == "普陀区"
    assert a.citations[0].case_id == "2021-09"


def test_follow_up_about_the_same_case(chain):
    a = chain.invoke({"question": "它取得了什么成效？", "history": after(chain, "哪个区推出了“一楼一事办”？")})
    assert a.answerable and a.districts[0] == "虹口区"
    assert any("三、取得成效" in c.section for c in a.citations)


def test_follow_up_for_a_later_case(chain):
    a = chain.invoke({"question": "后来有升级版吗？", "history": after(chain, "宝山区的代办专员制度是怎么做的？")})
    assert a.answerable and a.citations[0].case_id == "2022-e10"


@pytest.mark.parametrize("question", ["", "   \n\t", "\u200b\u200b", "\x00\x01"])
def test_empty_questions_are_refused_clearly(chain, question):
    with pytest.raises(BadQuestion, match="问题是空的"):
        chain.invoke({"question": question})


def test_a_huge_paste_is_capped_and_still_answered(chain):
    a = chain.invoke({"question": "哪个区推出了“一楼一事办”？" + "啊" * 100_000})
    assert "问题太长" in a.answer and a.districts[:1] == ["虹口区"]


def test_traditional_chinese_and_full_width_are_normalised(chain):
    a = chain.invoke({"question": "浦東新區的國際人才港把審批時間壓縮到了幾天？"})
    assert a.citations and a.citations[0].case_id == "2019-01"
    b = chain.invoke({"question": "哪个区推出了“一楼一事办”？".replace("？", "?")})
    assert b.districts[:1] == ["虹口区"]


# --- LLM mode, with LangChain's fake chat model feeding realistic replies -------------------

def llm_chain(chain, reply: str) -> AnswerChain:
    fake = GenericFakeChatModel(messages=iter([AIMessage(content=reply)]))
    return AnswerChain(chain.answerer, chain.cfg, llm=fake)


def test_llm_answer_keeps_good_citations(chain, cfg):
    grounded = chain.invoke({"question": "哪个区推出了“一楼一事办”？"})
    reply = f"虹口区推出了“一楼一事办”。[1]{grounded.citations[1].quote}[2]"
    a = llm_chain(chain, reply).invoke({"question": "哪个区推出了“一楼一事办”？"})
    assert a.mode.startswith("llm") and a.answerable
    assert [c.quote for c in a.citations] == [c.quote for c in grounded.citations[:2]]
    assert a.districts == ["虹口区"]


def test_llm_markers_pointing_nowhere_are_removed(chain):
    a = llm_chain(chain, "虹口区推出了“一楼一事办”。[1][9]另有说法。[42]").invoke(
        {"question": "哪个区推出了“一楼一事办”？"})
    assert "[9]" not in a.answer and "[42]" not in a.answer and "[1]" in a.answer
    assert len(a.citations) == 1


def test_llm_reply_without_markers_gets_citations_by_similarity(chain):
    grounded = chain.invoke({"question": "哪个区推出了“一楼一事办”？"})
    quote = grounded.citations[0].quote
    a = llm_chain(chain, f"根据材料，{quote}").invoke({"question": "哪个区推出了“一楼一事办”？"})
    assert "[1]" in a.answer and a.citations[0].quote == quote


def test_llm_streams_its_words(chain):
    # The fake model streams word by word, split at spaces.
    pieces = list(llm_chain(chain, "虹口区 推出了 “一楼一事办”。[1]").stream({"question": "哪个区推出了“一楼一事办”？"}))
    assert len(pieces) > 2 and isinstance(pieces[-1], Answer)


def test_verify_alone():
    from rag.answer import Citation

    src = [Citation(1, "虹口区", "2021-10", "t", "c", 2021, "001.txt", (370, 370), "“一楼一事办”是虹口优化营商环境的专属品牌")]
    text, cited = verify("虹口区的品牌。[3]", src)
    assert text == "虹口区的品牌。[1]" and [c.n for c in cited] == [1]
    text, cited = verify("完全无关的一句话。[3]", src)
    assert text == "" and cited == []  # cites nothing and matches nothing: not shown


def test_llm_sentence_with_a_valid_marker_but_no_support_is_withheld(chain):
    # It was shown, with citations: the marker was valid, the claim was not in the source.
    a = llm_chain(chain, "所有区都是第一名[1]。").invoke({"question": "哪个区推出了“一楼一事办”？"})
    assert not a.answerable and "第一名" not in a.answer and a.citations == []


def test_llm_unsupported_sentences_go_and_supported_ones_stay(chain):
    grounded = chain.invoke({"question": "哪个区推出了“一楼一事办”？"})
    quote = grounded.citations[0].quote
    reply = f"{quote}[1]\n所有区都是第一名。[1]\n该做法把审批压缩到了987天。[1]"
    a = llm_chain(chain, reply).invoke({"question": "哪个区推出了“一楼一事办”？"})
    assert a.answerable and quote in a.answer
    assert "第一名" not in a.answer and "987" not in a.answer  # a number the source does not give
