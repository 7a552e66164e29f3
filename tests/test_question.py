"""Question understanding, table-driven: every rule that reads a question's wording is in
rag/question.py, and each row here is a wording it must read right, with the paraphrases that
would break a rule written to one phrasing."""

import json
from pathlib import Path

import pytest

from rag.question import INTERROGATIVE, BadQuestion, clean, detect_kind, from_english, parse


@pytest.mark.parametrize("question,kind", [
    ("哪个区推出了“一楼一事办”？", "which_district"),
    ("一楼一事办是哪个区搞的", "which_district"),
    ("Which district runs the Zhengyintong bank service?", "which_district"),
    ("哪些区搞了企业代办服务？", "list_districts"),
    ("有哪些区都做了信用修复？", "list_districts"),
    ("Which districts offer agents who handle approvals for companies?", "list_districts"),
    ("Which Shanghai district set up a scheme assigning a finance officer to each chamber of commerce?", "which_district"),
    ("Which Shanghai districts let one business licence cover several addresses?", "list_districts"),
    ("静安区在办税方面有什么做法？", "what_measure"),
    ("浦东人才港把审批时间压缩到了几天？", "fact_number"),
    ("How many days does the talent hub approval take now?", "fact_number"),
    ("宝山区和嘉定区的代办服务有什么不同？", "comparison"),
    ("对比一下两个区的做法", "comparison"),
    ("崇明区的花博人家项目", "what_measure"),
    # 各区 in a collection's name, or other districts in an aside, ask for no list.
    ("各区在人才服务方面都有什么做法？", "list_districts"),
    ("上海市2022年度各區優化營商環境優秀案例中，奉賢區的「無科層」審批改革，營業執照最快多少分鐘辦成？", "fact_number"),
    ("我之前在别的区也见过这种机器人，想问虹口这个机器人叫什么名字？", "what_measure"),
    ("22年度优秀案例里奉贤的无科层审批改革，营业执照最快几分钟能拿到啊", "fact_number"),
    # 比较 as "rather" compares nothing; a request to compare, in a clause about the asker, does.
    ("深圳那边商事登记改革搞得比较早。浦东的确认制若干规定是从哪天开始施行的？", "fact_number"),
    ("领导让我写材料对比上海两个区的改革，奉贤搞了审核独任制，徐汇设了独任审批官，能帮我比较一下两者的适用范围吗？", "comparison"),
    ("Compare the 2021 cases of the Jing'an and Putuo tax bureaus: what did each one do?", "comparison"),
])
def test_kind(question, kind):
    assert detect_kind(parse(question).text) == kind == parse(question).kind


@pytest.mark.parametrize("question,asked,mentioned", [
    ("静安区在办税方面有什么做法？", ("静安区",), ()),
    ("不用再跑浦东了，徐汇区有没有一网通办的做法？", ("徐汇区",), ("浦东新区",)),
    ("我们公司在浦东，想问问徐汇区的住所云怎么用？", ("徐汇区",), ("浦东新区",)),
    ("漕河泾那边的法律服务是怎么做的", ("徐汇区",), ()),
    ("What did Jing'an do about tax refunds?", ("静安区",), ()),
    # The subject in a clause of its own, before the clause that asks: asked about, not an aside.
    ("黄浦区搞“一楼一次办”的时候，那个购物中心开业用了多少天？", ("黄浦区",), ()),
    ("徐汇区的标准住所库，现在有多少处地址入库了？", ("徐汇区",), ()),
    # An aside speaks of the asker, in any person.
    ("我老家在奉贤，想问问静安区的智能退税怎么做的？", ("静安区",), ("奉贤区",)),
    ("咱们厂在松江，金山区的一网畅融平台怎么用？", ("金山区",), ("松江区",)),
])
def test_districts_asked_about_are_kept_apart_from_those_mentioned(question, asked, mentioned):
    q = parse(question)
    assert (q.districts, q.mentioned) == (asked, mentioned)


@pytest.mark.parametrize("question,asked,named", [
    # A place inside a quoted programme name names the programme, not the district asked about.
    ("徐汇区的“闵址汇”标准住所库有多少地址？", ("徐汇区",), ("徐汇区",)),
    ("青浦区为“花博人家”实行的多址备案有多少户？", ("青浦区",), ("青浦区",)),
    # Unquoted, it is a place of its district; only names and short forms count as named.
    ("徐汇的闵址汇 入库了多少个地址", ("徐汇区", "闵行区"), ("徐汇区",)),
    ("张江的人才港是怎么运作的", ("浦东新区",), ()),
    # Who asks which district does not know it: a district named is where the asker is.
    ("朋友在金山做化工，说有个区请企业老板吃早餐开会，是哪个区？", (), ()),
])
def test_districts_named_apart_from_places(question, asked, named):
    q = parse(question)
    assert (q.districts, q.named) == (asked, named)


@pytest.mark.parametrize("question,elsewhere", [
    ("北京海淀区给企业配代办员的做法是怎样的？", ("北京", "海淀")),
    ("杭州有没有类似一网通办的做法？", ("杭州",)),
    ("我们在南京也有分公司，想问上海哪个区有企业代办服务？", ()),
    ("我老家在宁波，现在在上海开店，汇商码是哪个区的？", ()),
    ("之前在深圳办过类似的，上海的政银通在哪个区？", ()),
    # The subject in an opening clause, the question in the next.
    ("深圳前海推行的商事登記確認制，具體有哪些做法？", ("深圳",)),
    # The sentences before the question tell the asker's story, whatever they ask in passing.
    ("我爸妈年纪大了，上回在苏州社保中心排了一上午队也没弄明白要交啥材料。听说上海有个区专门有人全程陪老人办事，是哪个区？", ()),
    ("去年在杭州那边办税体验还不错。听说静安区打造了一个标准化办税服务厅，具体怎么做的？", ()),
    ("我看了些资料。北京的接诉即办机制在企业服务上具体是怎么运作的？", ("北京",)),
    # In English: the city as the subject, or in a sentence about the asker.
    ("How many hours does it take to get a business licence in Shenzhen Qianhai?", ("深圳",)),
    ("Does Hong Kong let investors register through banks?", ("香港",)),
    ("My company is in Suzhou. How many days does Pudong take to approve a work permit?", ()),
])
def test_another_city_in_an_aside_is_not_the_subject(question, elsewhere):
    assert parse(question).elsewhere == elsewhere


def test_traditional_full_width_and_english_are_read():
    q = parse("浦東新區的人才港把審批時間壓縮到幾天？")
    assert q.districts == ("浦东新区",) and "审批时间" in q.text and q.figures == ("天",)
    assert parse("ＡＢＣ１２３ 一网通办").text.startswith("ABC123")
    e = parse("Which district set up the international talent hub in Zhangjiang?")
    assert e.language == "en" and "张江" in e.text and "人才" in e.text
    assert {"利率", "金山区", "贷款"} <= set(parse("What interest rate did companies pay on Jinshan's loans?").text.split())
    # A comparison keeps the order the question names its sides in.
    assert parse("Compare Minhang's 企业服务专员 and Baoshan's 代办专员").districts == ("闵行区", "宝山区")
    assert parse("Compare Baoshan's 代办专员 and Minhang's 企业服务专员").districts == ("宝山区", "闵行区")


@pytest.mark.parametrize("question,years,collection", [
    ("2021年的优秀案例里有哪些区做了信用修复？", (2021,), "2021"),
    ("2020年的案例集里有没有讲代办？", (2020,), "2020"),
    ("第三批案例里有没有虹口的做法", (), "第三批"),
    ("良好实践里静安区做了什么", (), "良好实践"),
    ("浦东人才港是2019年4月开港的吗", (2019,), ""),
    ("21年那批优秀案例里嘉定的小嘉帮办，帮办站一共现场帮办了几次呀", (2021,), "2021"),
    ("22年度奉贤的无科层审批改革", (2022,), ""),
    # The next batch is a collection no document holds; the next round of a programme is not one.
    ("下一批区优化营商环境优秀案例什么时候发布？", (), "下一批"),
    ("听说每年都会评营商环境案例，那下一批啥时候出啊", (), "下一批"),
    ("奉贤早餐圆桌下一场啥时候开", (), ""),
    # Years of a firm's life, not a collection's.
    ("发展了20年的企业有哪些扶持", (), ""),
    ("开了22年的老店能不能申请", (), ""),
])
def test_years_and_collections(question, years, collection):
    q = parse(question)
    assert (q.years, q.collection) == (years, collection)


def test_quoted_programmes_and_claims():
    q = parse("徐汇区的“国际人才港”是怎么运作的？")
    assert q.quoted == ("国际人才港",) and q.districts == ("徐汇区",) and q.claims
    assert not parse("哪些区做了信用修复？").claims
    # The programme's name stays in what the question is about, place word and all.
    assert "“闵址汇”标准住所库" in parse("徐汇区的“闵址汇”标准住所库有多少地址？").topic
    # An apostrophe is no quote; an English question's Chinese name in brackets is the programme's.
    e = parse("How many market entities are registered on Jing'an District's 'Huishang Code' (汇商码) platform?")
    assert e.quoted == ("汇商码",) and e.districts == ("静安区",)
    assert parse("What does Minhang's 'Residence Cloud' (住所云) do?").quoted == ("住所云",)


@pytest.mark.parametrize("question,history,move", [
    ("那松江区呢？", [("青浦区的信用修复是怎么做的？", "青浦区 —— 《积极做好信用修复》")], "swap_district"),
    ("它的成效怎么样", [("哪个区推出了一楼一事办？", "虹口区 —— 《…》")], "same_case"),
    ("这是哪一年入选的？", [("政银通是哪个区的？", "杨浦区 —— 《…》")], "same_case"),
    ("还有别的区也这么做吗？", [("哪个区推出了代办专员？", "宝山区 —— 《…》")], "other_districts"),
    ("后来有升级版吗", [("金山区社会投资项目代办怎么做？", "金山区 —— 《…》")], "later"),
    ("之前有没有类似的做法？", [("宝山区的首席代办是怎么回事？", "宝山区 —— 《…》")], "earlier"),
])
def test_follow_up_moves(question, history, move):
    turns = [m for u, a in history for m in ({"role": "user", "content": u}, {"role": "assistant", "content": a})]
    q = parse(question, turns)
    assert q.follow and q.follow.move == move
    assert q.follow.previous.text == parse(history[-1][0]).text


def test_follow_up_reads_case_ids_and_keeps_the_topic():
    history = [{"role": "user", "content": "青浦区的信用修复是怎么做的？"},
               {"role": "assistant", "content": "青浦区 —— 《积极做好信用修复》", "case_ids": ["2021-18"]}]
    q = parse("那松江区呢？", history)
    assert q.follow.shown == ("2021-18",) and q.districts == ("松江区",)
    assert "信用修复" in q.search and "青浦" not in q.search
    assert q.kind == "what_measure"


def test_a_standalone_question_after_history_is_not_a_follow_up():
    history = [{"role": "user", "content": "哪个区推出了一楼一事办？"}, {"role": "assistant", "content": "虹口区"}]
    assert parse("浦东国际人才港把外国人工作许可审批压缩到了几天？", history).follow is None


def test_clean_cuts_before_it_normalises():
    text, note = clean("\u0301\u0316" * 50000, 2000)
    assert len(text) <= 4000 and "太长" in note
    with pytest.raises(BadQuestion):
        parse("\u200b \x00 ")


def test_asking_for_more_of_the_same_case_is_not_asking_for_other_districts():
    history = [{"role": "user", "content": "哪个区推出了一楼一事办？"}, {"role": "assistant", "content": "虹口区"}]
    assert parse("它还有什么成效？", history).follow.move == "same_case"
    assert parse("第二年的案例里，他们还有入选的做法吗？", history).follow.move == "later"


@pytest.mark.parametrize("question,asks", [
    ("长宁的夜间施工好办系统有没有咨询热线？电话号码是多少？", ("phone",)),
    ("普陀区税务局办税服务厅的地址在哪？", ("address",)),
    ("《小嘉帮办服务手册》是哪天正式印发的？", ("date",)),
    ("杨浦创业之星大赛获奖项目能拿多少奖金？", ("money",)),
    ("名称申报成功率具体提高到了百分之多少？", ("percent",)),
    ("哪个区推出了一楼一事办？", ()),
    # Only what is asked counts: an address programme, a hotline in an aside, the year a case was
    # selected (every case carries its collection), "what happens when" are no fact to look for.
    ("一张营业执照可以备案好几个经营地址，这是哪个区的做法？", ()),
    ("Which district is planning a 2.0 version of its address platform?", ()),
    ("我在常州开公司，当地政府热线回复慢得很。奉贤的对话贤商平台是怎么回复企业的？", ()),
    ("这是哪一年入选的", ()),
    ("住所云免交住所证明，这个是哪年正式实现的？", ("date",)),
    ("Under Xuhui's mechanism, what happens when a sub-district can't solve it?", ()),
    ("When did Pudong open its talent hub?", ("date",)),
    ("那个码叫什么名字？", ()),
    # "是谁" asks in a clause of its own, before "叫什么名字".
    ("宝山区美迪西项目里，罗店镇的首席代办员是谁？叫什么名字？", ("person",)),
    ("静安市北那个税务共治点几点开门 周末开不开啊", ("hours",)),
    ("What time does the Putuo tax hall open on Saturdays?", ("hours",)),
    ("静安区的信用监管有哪几点做法？", ()),
    ("一季度开门红，哪个区的重大项目审批提速了？", ()),
    # Spoken and terse ways to ask for a date, a rate, an area, a person.
    ("徐汇开办企业一窗通3.0版啥时候上线啊", ("date",)),
    ("闵行区企业服务平台 2.0版 上线时间", ("date",)),
    ("松江批次包业务给企业的贷款利率一般是多少？", ("percent",)),
    ("临港在奉贤扩区区域做的区域评估试点，覆盖面积有多大？", ("area",)),
    ("那个服务中心地方有多大啊，有几个平方？", ("area",)),
    ("有几个平台可以办？", ()),
    ("What is the maximum amount a single company can borrow?", ("money",)),
    ("羅店鎮的首席代辦員是哪一位？姓名是什麼？", ("person",)),
    # "多大" alone asks the size of anything; "哪一位企业" asks which firm.
    ("是在市担保中心新增授权的多大担保规模内进行的？", ()),
    ("这个做法对企业的帮助有多大？", ()),
    ("首席代办员对接的是哪一位企业负责人？", ("person",)),
    # An amount asked as a limit, an ordinal, organisations by name; a count of them is no name.
    ("杨浦区困难行业稳就业补贴的封顶额度是多少？", ("money",)),
    ("上海家化被纳入了第几批全电票试点？", ("ordinal",)),
    ("Which batch of e-invoice trials did the company join?", ("ordinal",)),
    ("崇明合作的12家银行具体是哪几家？", ("names",)),
    ("我想知道具体是哪些银行", ("names",)),
    # The asker asking ("我想知道…", "想请教一下…", "I'd like to know…") frames the question; a clause
    # about the asker ("我在苏州开了几家店") is an aside.
    ("我在崇明开了个农场，听说签约了12家银行，我想知道具体是哪些银行，里面有没有农商行？", ("names",)),
    ("我想了解一下浦东企业专属网页的2.0版是哪年上线的，杭州那边升级过好几次", ("date",)),
    ("我问一下，这个窗口的电话是多少？", ("phone",)),
    ("本人就是想再问问，这个窗口的电话是多少？", ("phone",)),
    ("我们公司热线一直占线，浦东的人才港是怎么做的？", ()),
    ("嘉定小嘉帮办的好评率（群众满意度）是多少？", ("percent",)),
    ("奉贤的“四个一”云审批具体是哪四个“一”？", ()),
    ("那三个服务团具体是哪些？", ()),
    ("崇明区合作了多少家银行？", ()),
    # English "how much" asks for money unless it asks by how much something changed.
    ("How much did the company receive from the subsidy?", ("money",)),
    ("How much more subsidy did Minhang give this year?", ("money",)),
    ("By how much did Pudong cut the approval time?", ()),
    ("How does Pudong accelerate corporate registration?", ()),
    ("How much faster is a licence issued now?", ()),
])
def test_the_kind_of_fact_asked_for(question, asks):
    assert parse(question).asks == asks


@pytest.mark.parametrize("question,figures", [
    ("浦东人才港把审批时间压缩到了几天？", ("天",)),
    ("办结时限缩短到几个工作日？", ("工作日",)),
    ("营业执照最快多少分钟就能拿到", ("分钟",)),
    # "哪几个" asks which ones, "好几个/十几个" are the asker's own numbers.
    ("法律服务团按专业分成了哪几个小组？", ()),
    ("我们在外地好几个门店，十几个院子，上海哪个区能一照多址？", ()),
    # A count in an aside is not asked for.
    ("我开了几家店，一直很麻烦，哪个区有住所云？", ()),
])
def test_the_figure_asked_for(question, figures):
    assert parse(question).figures == figures


@pytest.mark.parametrize("question,stated", [
    ("闵行区企业服务平台是不是出2.0版了？啥时候上线的", ("2.0",)),
    ("青浦区2022年一年里处理了多少件信用修复？", ("2022",)),
    ("静安区首批静安才管家重点服务的39家企业具体是哪些？", ("39",)),
    ("徐汇开办企业一窗通第三期什么时候上线？", ("第三期",)),
    # An amount in the corpus's units: the case writes 10万元, and the English question is read so.
    ("Refunds under 100,000 yuan are auto-approved. When will that be raised?", ("10万",)),
    ("静安区10万元以下的退税是自动审批的吗？", ("10万",)),
    ("1,800家企业是哪年入驻的？", ("1800",)),
    # A collection's year, the span of the collections, a number in the asker's story: no detail.
    ("2022年度 奉贤 无科层审批 营业执照 最快多少分钟", ()),
    ("2021年全市各区优化营商环境优秀案例里浦东的人才港是怎么做的？", ()),
    ("2019到2022年这几批案例里，由区税务部门牵头的办税服务案例分别来自哪些区？", ()),
    ("我2019年在苏州开了公司，想问浦东人才港几天办完", ()),
    ("19年第一批區營商環境特色案例裡，長寧的工地夜間施工「好辦」系統，最快幾分鐘能辦結？", ()),
    ("In the 2021 collection of excellent district cases, how many seats did Jiading set up?", ()),
    # "打12345也没啥用" is the asker's story, not the question.
    ("我以前住静安的时候打12345也没啥用。想问问长宁批了夜间施工以后，执法的人靠什么系统看？", ()),
])
def test_the_numbers_a_question_states(question, stated):
    assert parse(question).stated == stated


@pytest.mark.parametrize("english,chinese", [
    # "100 million yuan" is what "亿元楼" counts in.
    ("over 100 million yuan in tax", "over 亿 yuan in tax"),
    ("a 2.5 billion fund", "a 25亿 fund"),
    ("3 thousand firms and 1,234,567 visits", "3000 firms and 123.4567万 visits"),
    ("99,999.99 yuan, 1,234.5 million", "9.999999万 yuan, 12.345亿"),
    # A number without a scale word or groups of three is as written: a hotline, a year, a count.
    ("call 12345 since 2019 for 300 firms", "call 12345 since 2019 for 300 firms"),
    ("since May 1,2021, 12,3456 firms", "since May 1,2021, 12,3456 firms"),
    # A Chinese question with a Latin word keeps its numbers as written.
    ("浦东App补贴分100，200，500元三档", "浦东App补贴分100,200,500元三档"),
])
def test_english_amounts_are_written_as_the_corpus_writes_them(english, chinese):
    assert from_english(clean(english, 2000)[0]).endswith(chinese)


def test_a_new_question_after_history_stands_alone():
    history = [{"role": "user", "content": "哪个区推出了“一楼一事办”？"}, {"role": "assistant", "content": "虹口区 —— 《…》"}]
    assert parse("哪些区搞了企业代办服务？", history).follow is None
    assert parse("哪个区有类似的？", history).follow is not None


@pytest.mark.parametrize("word,asks", [
    ("多少", True), ("几家", True), ("有没有", True), ("大概", True), ("哪一年", True), ("是否", True),
    # Topic words that start like one: the detail asked about is not how it is asked.
    ("多元", False), ("几何", False), ("大数据", False), ("一共治", False),
])
def test_interrogative_words_are_how_a_question_asks(word, asks):
    assert bool(INTERROGATIVE.fullmatch(word)) == asks


def test_glossary_words_are_the_corpus_own():
    """An English word helps the keyword side only if the Chinese beside it is what the seeds say."""
    seeds = "".join(p.read_text(encoding="utf-8") for p in (Path(__file__).parent.parent / "seeds").glob("*.txt")).lower()
    terms = json.loads((Path(__file__).parent.parent / "rag" / "glossary.json").read_text(encoding="utf-8"))["terms"]
    missing = [(en, zh) for en, words in terms.items() for zh in words.split() if zh.lower() not in seeds]
    assert not missing and len(terms) > 200
    e = parse("Which Shanghai districts give a new company its seal for free?")
    assert "公章" in e.text and e.kind == "list_districts"


@pytest.mark.parametrize("question,asked,mentioned", [
    # What the asker knows or did is an aside, not a request: the district in it is mentioned.
    ("我知道浦东有个人才港，徐汇有没有类似的做法？", ("徐汇区",), ("浦东新区",)),
    ("我问过浦东的窗口，他们说要等十天，徐汇要几天？", ("徐汇区",), ("浦东新区",)),
    # A clause that only frames ("我想知道，…") leaves the question to the clauses after it.
    ("我想知道，我们在南京的分公司能不能在浦东办？", ("浦东新区",), ()),
])
def test_a_request_frame_is_not_an_aside_and_a_statement_is(question, asked, mentioned):
    q = parse(question)
    assert (q.districts, q.mentioned) == (asked, mentioned)


def test_what_evidence_must_cover_leaves_out_asides_about_the_asker():
    q = parse("我在无锡税务系统工作，静安市北那个共治点2022年一共接待了多少人次？")
    assert "无锡" not in q.focus and "共治点" in q.focus
    assert parse("浦东人才港把审批时间压缩到了几天？").focus == "浦东人才港把审批时间压缩到了几天"
    # The glossary's Chinese words stand in front, with the first clause: all of the text is read.
    for question in ("I run a small factory in Suzhou. Which district lets a firm register with just a lease?",
                     "我在苏州开厂，Pudong的credit repair怎么办理？"):
        assert parse(question).focus == parse(question).text
    assert "信用修复" in parse("我在苏州开厂，Pudong的credit repair怎么办理？").focus
    # A follow-up reads the turn before it without that turn's aside.
    history = [{"role": "user", "content": "我在无锡税务系统工作，静安市北那个共治点2022年一共接待了多少人次？"},
               {"role": "assistant", "content": "…"}]
    q = parse("那2021年呢？", history)
    assert "共治点" in q.focus and "2021" in q.focus and "无锡" not in q.focus
