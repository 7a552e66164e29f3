"""(text, history) → Query: every rule that reads a question's wording lives here.

The rest of the chain never looks at the words again: retrieval searches `Query.search`, steers
by `Query.districts` and `Query.years`, and the answer takes its shape from `Query.kind`,
`Query.wants` and `Query.follow`. What the question merely mentions (a city in an aside, a place
one travels to) is kept apart from what it asks about, and what it claims ("徐汇区的国际人才港")
is kept as a claim for the evidence to confirm or correct, not as a filter that hides the truth.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from rag.corpus import place_mentions

# Lone surrogates too: Python's stand-ins for undecodable bytes, which nothing can encode.
# A terminal's colour codes (ESC [ 31 m) come along when a question is copied out of one: the
# whole sequence is formatting, not just its ESC.
INVISIBLE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|[\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
EMPTY = "问题是空的：请输入一个关于上海各区优化营商环境案例的问题。"

KINDS = ("which_district", "list_districts", "what_measure", "fact_number", "comparison")
# Asking to compare, as a request ("对比一下", "比较下", "compare"), not 比较 as "rather".
COMPARE = r"对比|比较一?下|compare"
KIND_RULES = (
    ("comparison", re.compile(r"对比|比较(?!早|晚|多|少|好|快|慢|大|小|高|低|难|麻烦|方便|常见|普遍|成熟)|相比|区别|异同|不同|"
                              r"分别|各自|和.{1,8}(相比|比)|差别|差异|\bvs\b|compare|difference")),
    ("list_districts", re.compile(r"哪些区|哪几个区|几个区|多少个区|有哪些地方|各区(?!优化营商环境)|都有哪些|哪些.{0,6}区|还有(哪|别的|其他|其它)的?区|"
                                  r"别的区|其他区|其它区|(?:which|what) (?:shanghai |other )?districts|other districts")),
    ("which_district", re.compile(r"哪个区|哪一个区|哪个地方|哪区|是哪里|在哪里|哪个区县|是哪儿|那个区|哪家区|which (?:shanghai )?district|"
                                  r"where (?:is|was|in shanghai)")),
    ("fact_number", re.compile(r"多少|几[天个项家年月次人名倍成户件笔条所批周]|几个?(?:小时|分钟|工作日)|哪一?天|哪一?年|什么时候|何时|几号|"
                               r"比例|百分|压缩到|缩短到|减少到|提高到|数量|规模|金额|how (?:many|much|long)|"
                               r"what year|when did|number of|percentage")),
    ("what_measure", re.compile(r"做法|举措|措施|怎么|如何|采取|经验|具体|干了什么|做了什么|有什么|内容|机制|成效|效果|"
                                r"what did|how did|how does|what (?:is|are|was)")),
)
# What part of a case the question wants, beyond the kind.
WANTS = (
    ("effect", re.compile(r"成效|效果|成果|取得了?什么|结果|怎么样了|results?|effect|outcome|impact")),
    ("year", re.compile(r"哪一?年|什么时候|何时|哪批|哪一批|入选|what year|which year|when")),
)

YEAR = re.compile(r"(20\d\d)\s*(?:年度?|年)?")
# A collection named by its place in a series or its list ("第一批", "良好实践").
BATCH = re.compile(r"第([一二三四五六七八九十\d]+)批")
# "下一批案例什么时候发布": a collection not yet published, so in no document.
NEXT_BATCH = re.compile(r"下一?(?:批|届|期|轮)(?=[^，。？?]{0,16}(?:案例|评选))|(?:案例|评选)[^。？?]{0,12}下一?(?:批|届|期|轮)")
LISTS = ("优秀案例", "良好实践", "特色案例")
NEXT = "下一批"
# Words that speak of a collection itself: which cases it selected, and how it ranked them.
COLLECTION_TALK = re.compile(r"上海市?|各区|全市|优化营商环境|营商环境|优秀案例|良好实践|工作特色案例|特色案例|案例集?|"
                             r"入选|评选?|上榜|榜单|名单|发改委|发布|公布|计划|预计|什么时候|啥时候|何时|"
                             r"排名|排第|第[一二三四五六七八九十\d]+名?|都有|有哪些|哪些区?|哪个|是什么")
# A year that names a collection ("2020年的案例集", "2018年度优秀案例"), not an event inside a case.
COLLECTION_YEAR = re.compile(r"(20\d\d)\s*年度?[^，。？?]{0,16}(优秀案例|案例集|特色案例|良好实践|评选|排名|那批|这批|一批|案例)")
# "不用再跑浦东": a place one travels to is not the district asked about.
TRAVEL = re.compile(r"(?:跑|去|赶|赴|来)(?:到|去|往)?[\u4e00-\u9fff]{2,4}?(?=[，。？?、,！]|$|办|送|跑)")
# An ASCII ' quotes only where it is not an apostrophe: "Jing'an District's 'Huishang Code'" quotes
# one name, not "an District".
QUOTED = re.compile(r"(?:[“\"「『《‘]|(?<![A-Za-z])')([^”\"」』》’']{2,20})(?:[”\"」』》’]|'(?![A-Za-z]))")
# An English question gives a programme's Chinese name in brackets: "'Residence Cloud' (住所云)".
BRACKETED_HAN = re.compile(r"[(（]([\u4e00-\u9fff]{2,20})[)）]")
# "21年那批", "22年度": a year of the collections written short.
SHORT_YEAR = re.compile(r"(?<![\d.])(1[89]|2\d)(?=年度|年(?:那|这|第[一二三四五六七八九十\d]+批|的?(?:优秀|案例|全市|各区)|入选))")
# "多少名/几天/多少钱": the unit a figure is asked in. "哪几个/好几个/十几个" count nothing: they ask
# which ones, or are a number of the asker's own; "有几个区" is counted by the list itself.
ASKED_UNIT = re.compile(r"(?:多少|(?<![哪好十])几(?!十))(?:个|名)?(小时|分钟|工作日|[天个项家年月次人名位倍户件笔条台场元万亿秒%张所批])(?!区)"
                        r"|多少[^，。？?]{0,4}?(钱|补贴|资金|投资|费用|经费)")
# "In the 2021 collection": a collection named in English.
ENGLISH_COLLECTION = re.compile(r"20\d\d\s+(?:collection|batch|edition|list)", re.I)
# "2019到2022年这几批": the span of the collections, not a detail.
YEAR_RANGE = re.compile(r"20\d\d\s*年?\s*(?:到|至|-|—|~|and|to)\s*20\d\d")
# A number the question states ("2.0版", "2020年", "39家"): the detail it asks about is one the
# evidence must hold. A collection it names ("2022年度", "第一批") is a claim the premise check reads.
# "10万元以下" states 10万, not a 10 that any text holds.
STATED = re.compile(r"(?<![\d.])\d+(?:\.\d+)?[万亿]?(?![\d.]*\s*年度)|第[一二三四五六七八九十\d]+[期版轮届]")
# "1,800家", "100,000 yuan": a number in groups of three; "2019,2020" is two years.
THOUSANDS = r"\d{1,3}(?:,\d{3})+(?![\d,])"
# The kind of fact a question asks for, where the text must hold one of its shape to answer it.
ASKS = (
    ("phone", re.compile(r"电话|热线|号码|联系方式|phone|hotline|contact number")),
    # Asking where a thing is, not about an address programme ("多个经营地址", "住所云 address platform").
    ("address", re.compile(r"地址在哪|地址是|什么地址|哪个地址|门牌|几楼|哪一?层|在哪条路|address of|"
                           r"what(?:'s| is) the address|which floor|which building|street number|where exactly")),
    # "哪年入选/哪一批" asks for a collection, which every case carries; this is a date in the text.
    ("date", re.compile(r"哪天|哪一天|几月几[日号]|几号|什么时候|啥时候?|何时|几时|日期|(?<!批)哪一?年(?!.{0,6}(入选|案例|评))|"
                        r"(?:上线|施行|实施|发布|印发|启用|开通|成立|揭牌|开业|推出)的?时间|"
                        r"\bwhen (?:did|was|were|will|is|does|do)\b|^when\b|what date")),
    ("money", re.compile(r"多少钱|多少万|多少元|奖金|资助|补贴多少|费用|经费|预算|成本是?多少|花了多少|金额|额度|收费|手续费|"
                         r"要钱|年薪|工资|薪资|cost|budget|prize|fee|salary|amount|"
                         # "by how much did they cut the time", "how much earlier": a difference, not money.
                         r"(?<!\bby\s)how much(?!\s+(?:earlier|sooner|faster|quicker|later|shorter|longer|time))")),
    ("percent", re.compile(r"百分之|百分比|比例|占比|多少成|率(?:[（(][^）)]{0,12}[）)])?(是|为|达到?)?多少|提高了?多少|利率|费率|多少个点|"
                           r"percent|percentage|\brates?\b")),
    # "多大" alone asks a size of anything ("多大担保规模", "多大作用").
    # Spoken: "有几个平方", misheard as "几个平房".
    ("area", re.compile(r"面积|多少个?平(?!台|均|安)|几个?平(?!台|均|安)|平方|how big|how large|square met|floor area")),
    # Opening hours; "几点建议/几点做法" are so many points, "开门红" a good start.
    ("hours", re.compile(r"几点(?!建议|意见|做法|举措|经验|措施|体会)|营业时间|开门(?!红)|开放时间|办公时间|上班时间|周末开|"
                         r"opening hours|what time|open on")),
    # "第几批试点", "第几届大赛": an ordinal the text states as 第八批.
    ("ordinal", re.compile(r"第几|哪一?(?:期|届|轮)|which (?:batch|round|edition|phase|session)")),
    # Which organisations, by name: "12家银行具体是哪几家" is not answered by the count.
    ("names", re.compile(r"哪几家|哪些家|哪些(?:银行|企业|公司|机构)|(?:银行|企业|公司|机构)[^，。？?]{0,8}(?:具体|分别)是?哪|"
                         r"名单|which (?:companies|banks|firms)|names of")),
    # A person asked for; "叫什么名字" names a programme as often as a person.
    ("person", re.compile(r"是谁|谁负责|负责人|哪一?位(?!.{0,3}(?:企业|公司|单位))|姓名|\bwho (?:is|was|leads|runs|heads)\b|"
                          r"(?:person|official)'s name")),
)
# Places outside Shanghai a user may name, as the subject of a question or in passing.
ELSEWHERE = ("北京", "深圳", "广州", "杭州", "苏州", "南京", "成都", "天津", "重庆", "武汉", "西安", "宁波",
             "厦门", "青岛", "合肥", "长沙", "郑州", "济南", "雄安", "香港", "澳门", "台湾", "海淀", "朝阳区",
             "无锡", "昆山", "嘉兴", "温州", "东莞", "佛山", "珠海", "新加坡", "全国", "国家层面", "外省")
# The same places as an English question names them.
ELSEWHERE_EN = {"beijing": "北京", "shenzhen": "深圳", "guangzhou": "广州", "hangzhou": "杭州", "suzhou": "苏州",
                "nanjing": "南京", "chengdu": "成都", "tianjin": "天津", "chongqing": "重庆", "wuhan": "武汉",
                "xi'an": "西安", "xian": "西安", "ningbo": "宁波", "xiamen": "厦门", "qingdao": "青岛", "hefei": "合肥",
                "changsha": "长沙", "zhengzhou": "郑州", "jinan": "济南", "xiong'an": "雄安", "hong kong": "香港",
                "macau": "澳门", "macao": "澳门", "taiwan": "台湾", "wuxi": "无锡", "kunshan": "昆山", "jiaxing": "嘉兴",
                "wenzhou": "温州", "dongguan": "东莞", "foshan": "佛山", "zhuhai": "珠海", "singapore": "新加坡",
                "qianhai": "深圳"}
# Pronouns and openers that lean on the previous turn.
ANAPHORA = re.compile(r"^(那么?|还有|另外|它|他们|这个|这些|该|其|此|这|那)|呢[？?]?$|后来|上面|刚才|前面|这项|这一|类似|同样|"
                      r"也这么|这种|这样的|"
                      r"该案例|它们|他们|其中|这个做法|那个|同一个|同一年|这家|^(and|what about|how about)\b|\b(it|they|this|that)\b")
# The kind of move a follow-up makes.
MOVES = (
    ("other_districts", re.compile(r"别的区|其他区|其它区|别的地方|其他地方|还有(哪些?|别的|其他|其它)的?区|哪些区也|"
                                   r"other districts|anyone else|any other district")),
    ("earlier", re.compile(r"之前|以前|前一年|早些|更早|上一批|前一批|往年|第一批|earlier|before|previous year")),
    ("later", re.compile(r"后来|之后|后一年|第二年|次年|下一年|升级|新一批|下一批|后一批|最新|later|after|upgrade|next year")),
)
# An English full stop ends a sentence where a space follows it ("2.0版" has none).
SENTENCE_STOP = re.compile(r"[。！？!?；;\n]|\.(?=\s|$)")
CLAUSE = re.compile(r"[，,。！？!?；;：:\n]|\.(?=\s|$)")
# The words a question asks with ("多少", "几家", "有没有"): how it asks, not what about. The corpus
# never uses most of them, so read as topic words they would weigh as the rarest thing asked.
INTERROGATIVE = re.compile(r"(?:多少|多久|多长|多大|多远|多高|几|哪一?|有没有|是否|怎样|怎么样|大概|大约|一共|总共|来着)"
                           r"[个天家年次位名项种条]?")
ASKER = re.compile(r"我|咱|本人|俺|\b(?:i|we|my|our)\b", re.I)
# "我想知道具体是哪些银行", "我问一下": the asker asking, with the question after. "我知道浦东有…",
# "我问过浦东的窗口" state what the asker knows or did: those clauses are about the asker.
REQUEST = re.compile(r"^\s*(?:我们?|咱们?|本人)?(?:就是)?(?:(?:很?想|希望|需要|要)再?请?(?:知道|了解|问问?|请教|打听|咨询|确认|核实|请问)|"
                     r"(?:问|请教|打听|咨询|确认|核实|了解)(?:一下|下))(?:一下|下)?(?![过了到])(?:的是)?|"
                     r"\b(?:i|we)(?:['’]d| would)? (?:like|want|need) to (?:know|ask|check|find out)\b|"
                     r"\bi (?:wonder|was wondering)\b", re.I)

# English names for the places and the words of this corpus: the BM25 side needs Chinese tokens;
# the dense side is multilingual and reads the English as it is.
GLOSSARY = {
    "pudong": "浦东新区", "huangpu": "黄浦区", "xuhui": "徐汇区", "changning": "长宁区", "jing'an": "静安区",
    "jingan": "静安区", "jing an": "静安区", "putuo": "普陀区", "hongkou": "虹口区", "yangpu": "杨浦区",
    "minhang": "闵行区", "baoshan": "宝山区", "jiading": "嘉定区", "jinshan": "金山区", "songjiang": "松江区",
    "qingpu": "青浦区", "fengxian": "奉贤区", "chongming": "崇明区",
    "zhangjiang": "张江", "lingang": "临港", "lujiazui": "陆家嘴", "caohejing": "漕河泾", "hongqiao": "虹桥",
    "north bund": "北外滩", "zizhu": "紫竹", "yangtze river delta": "长三角",
    "talent": "人才", "foreign": "外国", "work permit": "工作许可", "residence permit": "居留许可",
    "one-stop": "一站式", "one stop": "一站式", "one window": "一窗", "single window": "一窗",
    "online": "一网通办 线上", "tax": "税", "refund": "退税", "invoice": "发票", "credit": "信用",
    "credit repair": "信用修复", "agent": "代办", "proxy": "代办", "on behalf": "代办", "concierge": "帮办",
    "business license": "营业执照", "license": "证照", "business licence": "营业执照", "licence": "证照", "permit": "许可", "bank": "银行", "loan": "贷款",
    "financing": "融资", "guarantee": "担保", "approval": "审批", "construction": "施工 工程建设",
    "night": "夜间", "medical device": "医疗器械", "legal": "法律", "lawyer": "律师", "court": "法院",
    "mediation": "调解", "dispute": "纠纷", "registered address": "住所 注册地址", "address": "住所 地址",
    "shop": "商铺", "mall": "商场", "store": "商铺", "building": "楼宇", "park": "园区", "startup": "创业",
    "entrepreneur": "创业", "employment": "就业", "job": "就业", "measurement": "计量",
    "metrology": "计量", "supervision": "监管", "regulation": "监管", "ranking": "排名", "days": "天",
    "working days": "工作日", "qr code": "码", "code": "码", "platform": "平台", "hotline": "热线",
    "listing": "上市", "ipo": "上市", "compliance": "合规", "recruit": "招聘 揽才", "homestay": "民宿",
    "flower expo": "花博", "expo": "博览会", "survey": "调查", "experience officer": "体验官",
    "interest rate": "利率", "chamber of commerce": "商会", "financial": "金融", "finance": "金融",
    "insurance": "保险", "pilot": "试点", "subsidy": "补贴", "fee": "费用", "phone": "电话", "telephone": "电话",
    "first half": "上半年", "breakfast": "早餐", "enterprise": "企业", "company": "企业", "companies": "企业",
}
# The corpus's other terms in English, as data: glossary.json says where they come from.
GLOSSARY = {**json.loads((Path(__file__).parent / "glossary.json").read_text(encoding="utf-8"))["terms"], **GLOSSARY}
ENGLISH_WORDS = [(en, zh, re.compile(rf"(?<![a-z]){re.escape(en)}s?(?![a-z])")) for en, zh in GLOSSARY.items()]
# "100 million yuan" is the corpus's 亿元 and "100,000 yuan" its 10万元: an English amount in the corpus's
# units, so a number the question states is one a case can hold. "12345" (a hotline) stays as it is.
ENGLISH_AMOUNT = re.compile(rf"(?<![\d.,])({THOUSANDS}(?:\.\d+)?|\d+(?:\.\d+)?)(?:\s*(thousand|million|billion)\b)?", re.I)
SCALE = {"": 1.0, "thousand": 1e3, "million": 1e6, "billion": 1e9}
# "how many" counts in any measure word ("how many financial service officers"): 多少个.
ENGLISH_KINDS = {"which districts": "哪些区", "which district": "哪个区", "how many days": "几天",
                 "how long": "多久", "how many": "多少个", "what year": "哪一年"}


@dataclass(frozen=True)
class Follow:
    """What a follow-up leans on: the previous question, the cases the last answer showed, and the
    move it makes ("那X区呢" → swap_district; "它的成效" → same_case; "还有别的区吗" → other_districts)."""

    previous: "Query"
    shown: tuple[str, ...]  # case ids, when the history carries them
    move: str
    last_answer: str = ""  # the last answer's first line, which names its case, for plain-text history


@dataclass(frozen=True)
class Query:
    raw: str  # as typed, cut to the budget, invisible characters gone, NFKC
    text: str  # Simplified, half-width: what rules and the search read
    language: str  # "zh" or "en"
    kind: str
    districts: tuple[str, ...] = ()  # asked about
    named: tuple[str, ...] = ()  # of those, the ones named as districts ("徐汇", "徐汇区"), not places ("漕河泾")
    mentioned: tuple[str, ...] = ()  # named in passing (an aside, a place one travels to)
    elsewhere: tuple[str, ...] = ()  # places outside Shanghai the question is about
    years: tuple[int, ...] = ()
    collection: str = ""  # a collection the question names: "2020", "第三批", "良好实践"…
    figures: tuple[str, ...] = ()  # units asked for: 天, 家, 元…
    asks: tuple[str, ...] = ()  # the kinds of fact asked for: phone, address, date, money, percent, area, hours, person
    asked_in: tuple[str, ...] = ()  # the words that ask for those facts ("地址", "面积", "几点开门"): not what they are about
    stated: tuple[str, ...] = ()  # numbers and ordinals the question states about its subject: "2.0", "2020", "第三期"
    quoted: tuple[str, ...] = ()  # programme names in quotes
    wants: str = ""  # "effect", "year" or "" (the case as such)
    topic: str = ""  # the text without district names: what the question is about
    about: str = ""  # the clauses about the subject, less the asides about the asker; "" for the whole text
    rest: str = ""  # the text without the collection it names: what it asks of that collection
    follow: Follow | None = None
    note: str = ""  # for the user: the question was cut

    @property
    def search(self) -> str:
        """The text to search with: a follow-up carries its topic from the turn before."""
        if self.follow and self.follow.move == "swap_district":
            return " ".join((*self.districts, self.follow.previous.topic, self.topic))
        if self.follow:
            return f"{self.follow.previous.search} {self.text}"
        return self.text

    @property
    def focus(self) -> str:
        """The search text less the asides about the asker: what evidence that answers must cover."""
        if self.follow and self.follow.move == "swap_district":
            return self.search
        own = self.about or self.text
        return f"{self.follow.previous.focus} {own}" if self.follow else own

    @property
    def claims(self) -> bool:
        """The question attributes something to a district ("徐汇区的国际人才港是怎么做的")."""
        return bool(self.districts) and self.kind not in ("list_districts", "comparison")


class BadQuestion(ValueError):
    """A question that cannot be asked; the message is for the user."""


@lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def cut(text: str, max_chars: int) -> tuple[str, str]:
    """The text as typed, less invisible characters, cut to max_chars: (text, a note for the user
    when it was cut)."""
    text = INVISIBLE.sub("", text or "")
    if len(text) <= max_chars:
        return text.strip(), ""
    return text[:max_chars].strip(), f"问题太长（{len(text)} 字），只按前 {max_chars} 字检索。"


def clean(text: str, max_chars: int) -> tuple[str, str]:
    """Cut first, then normalise: NFKC is quadratic on runs of combining marks, so it only ever
    sees a bounded text."""
    text, note = cut(text, max_chars)
    return unicodedata.normalize("NFKC", text).strip(), note


def normalise(text: str) -> str:
    """Traditional → Simplified, so that 浦東新區 finds 浦东新区."""
    return _t2s().convert(text)


def language(text: str) -> str:
    latin = len(re.findall(r"[A-Za-z]", text))
    han = len(re.findall(r"[\u4e00-\u9fff]", text))
    return "en" if latin > 3 * han else "zh"


def from_english(text: str) -> str:
    """The English question with Chinese names and terms added beside the words they translate."""
    if not re.search(r"[A-Za-z]", text):
        return text  # every glossary key is Latin: a question without a Latin letter has none to add
    if language(text) == "en":  # "浦东App补贴分100，200，500元" is a Chinese list of amounts
        text = ENGLISH_AMOUNT.sub(_chinese_amount, text)
    low = text.lower()
    found = [(m.start(), -len(en), zh) for en, zh, pattern in ENGLISH_WORDS if (m := pattern.search(low))]
    # In the order the question names them: "Compare Baoshan's … and Minhang's …" compares 宝山 to 闵行.
    added = [zh for _, _, zh in sorted(found)]
    kinds = [en for en in ENGLISH_KINDS if en in low]
    added += [ENGLISH_KINDS[en] for en in kinds if not any(en != k and en in k for k in kinds)]
    # In front: after the question mark they would stand in a clause of their own, not the question's.
    return f"{' '.join(dict.fromkeys(added))} {text}".strip()


def _chinese_amount(m: re.Match) -> str:
    number, scale = m.groups()
    if not scale and "," not in number:
        return number
    value = float(number.replace(",", "")) * SCALE[(scale or "").lower()]
    for unit, size in (("亿", 1e8), ("万", 1e4)):
        if value >= size:
            # "100 million yuan" is 亿元 ("亿元楼"), more often than 1亿元.
            return unit if value == size else f"{value / size:.10g}{unit}"
    return f"{value:.10g}"


def detect_kind(text: str) -> str:
    """Read from the clauses that ask: "我之前在别的区也见过，想问虹口这个叫什么" asks about 虹口."""
    low = "，".join(_requests(text)).lower()
    for kind, pattern in KIND_RULES:
        if pattern.search(low):
            if kind == "comparison" and len(places(text)[0]) < 2 and not re.search(COMPARE, low):
                continue
            return kind
    return "what_measure"


def places(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(districts asked about, districts named in passing). A district one travels to ("不用再跑浦东")
    or named in a clause that is not the question is mentioned, not asked about."""
    travel = {d for m in TRAVEL.finditer(text) for d in _districts(m.group(0))}
    asked, passing = [], []
    clauses = _clauses(text)
    asking = _about(clauses)
    for clause in clauses:
        for d in _districts(clause):
            (asked if clause in asking and d not in travel else passing).append(d)
    asked = list(dict.fromkeys(asked))
    return tuple(asked), tuple(d for d in dict.fromkeys(passing) if d not in asked)


def _districts(text: str) -> list[str]:
    return list(dict.fromkeys(d for _, _, d in place_mentions(text)))


def _district_name(word: str, district: str) -> bool:
    """浦东新区, 浦东, 徐汇区, 徐汇 name a district; 张江, 漕河泾, 闵址汇 are places or names in it."""
    return word == district or district.startswith(word) and len(word) == 2


def _asks(clause: str) -> bool:
    # "打12345也没啥用" says, not asks.
    return bool(re.search(r"哪|谁|什么|怎么|如何|多少|几|吗|呢|么|(?<!没)啥|咋|有没有|是否|请问|介绍|说说|讲讲|\?|？|"
                          rf"做法|举措|经验|{COMPARE}|which|what|how|where|when|does|did|is there", clause.lower()))


def elsewhere(text: str) -> tuple[str, ...]:
    """Places outside Shanghai the question is about: named in the sentence that asks, in a clause
    about the subject, and not as the place the asker comes from ("我们在南京也有分公司" is an aside).
    The sentences before the question tell the asker's story ("上回在苏州社保中心排了一上午队。听说
    上海有个区…"): whatever places they name, it asks about the one it asks about."""
    sentences = [s for s in SENTENCE_STOP.split(text) if s.strip()]
    asking = ([s for s in sentences if _asks(s)] or sentences or [""])[-1]
    out = []
    for clause in _about(_clauses(asking)):
        for place in ELSEWHERE:
            if place in clause and not re.search(rf"(我|我们|老家|公司|分公司|以前|之前|原来)[^，,。]{{0,6}}{place}", clause):
                out.append(place)
        # _about has left out the clauses about the asker ("our plant in Suzhou").
        out += [zh for en, zh in ELSEWHERE_EN.items() if re.search(rf"(?<![a-z]){re.escape(en)}(?![a-z])", clause.lower())]
    return tuple(dict.fromkeys(out))


def figures(text: str) -> tuple[str, ...]:
    return tuple(next(g for g in m.groups() if g) for c in _asking(text) for m in ASKED_UNIT.finditer(c))


def stated(text: str) -> tuple[str, ...]:
    """The numbers the question states in the clauses about its subject ("39家企业具体是哪些" states
    39, "我2019年在苏州开了公司" states nothing about the subject), less a collection it names."""
    for pattern in (YEAR_RANGE, COLLECTION_YEAR, BATCH, ENGLISH_COLLECTION):
        text = pattern.sub(" ", text)
    text = re.sub(THOUSANDS, lambda m: m.group(0).replace(",", ""), text)
    about = "，".join(_about(_clauses(text)))
    return tuple(dict.fromkeys(m.group(0) for m in STATED.finditer(about)))


def asks(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the kinds of fact asked for, the words that ask for them): a sentence giving the address
    ("铁岭路38号") need not say 地址."""
    asking = "，".join(_asking(text)).lower()
    found = [(a, m.group(0)) for a, p in ASKS for m in p.finditer(asking)]
    return tuple(dict.fromkeys(a for a, _ in found)), tuple(dict.fromkeys(w for _, w in found))


def _clauses(text: str) -> list[str]:
    return [c for c in CLAUSE.split(text) if c.strip()]


def _about(clauses: list[str]) -> list[str]:
    """The clauses that speak of the question's subject. An aside ("我老家在宁波，…", "我们在浦东有个
    厂，…") speaks of the asker, in an earlier clause than the question; an earlier clause that does
    not ("徐汇区的“住所云”，现在有多少…", "深圳前海推行的…，具体有哪些做法") names the subject.
    When no clause asks anything, every clause counts."""
    return [c for c in clauses if _asks(c) or not _of_asker(c)] or clauses


def _requests(text: str) -> list[str]:
    """The clauses that ask, or the last clause when none does."""
    clauses = _clauses(text)
    return [c for c in clauses if _asks(c)] or clauses[-1:]


def _asking(text: str) -> list[str]:
    """The clauses that ask, those not about the asker first: "当地政府热线回复慢得很" asks for no
    phone number, "我开了几家店" for no count, and "我们在南京也有分公司" is not about 南京."""
    requests = _requests(text)
    return [c for c in requests if not _of_asker(c)] or requests


def _of_asker(clause: str) -> bool:
    """The clause speaks of the asker ("我在苏州开了几家店"), not only frames the question ("我想知道
    具体是哪些银行"). A clause that is nothing but the frame ("我想知道，…") says nothing of the subject."""
    rest = REQUEST.sub("", clause)
    return bool(ASKER.search(rest)) or not rest.strip()


def without_collection(text: str) -> str:
    """What the question asks besides the collection it names: "2023年度优秀案例排名第一的是哪个？"
    asks nothing besides, nor does "…，第一批我看过了"; "2023年度优秀案例里浦东的人才港是怎么做的？"
    asks about 人才港."""
    for pattern in (COLLECTION_YEAR, BATCH, NEXT_BATCH, COLLECTION_TALK, ASKER):
        text = pattern.sub(" ", text)
    return text.strip()


def collection(text: str) -> str:
    m = COLLECTION_YEAR.search(text)
    if m:
        return m.group(1)
    m = BATCH.search(text)
    if m:
        return f"第{m.group(1)}批"
    if NEXT_BATCH.search(text):
        return NEXT
    return next((name for name in LISTS if name in text), "")


def programme_names(text: str, lang: str) -> tuple[str, ...]:
    """The names the question quotes. The corpus names programmes in Chinese, so an English
    question's own English quotes are not among them; the Chinese it gives in brackets is."""
    names = [m.group(1).strip() for m in QUOTED.finditer(text)]
    if lang == "en":
        names = [n for n in names if re.search(r"[\u4e00-\u9fff]", n)] + BRACKETED_HAN.findall(text)
    return tuple(dict.fromkeys(names))


def unquoted(text: str) -> str:
    """The text with quoted names blanked out, at the same length: a place inside a programme's
    name (“闵址汇”, “花博人家”) names the programme, not the district asked about."""
    return QUOTED.sub(lambda m: "＿" * len(m.group(0)), text)


def topic(text: str, mentions: list[tuple[int, str, str]]) -> str:
    """The question without the districts and places it names (`mentions`: place_mentions of its
    unquoted form, at the same positions): what it is about."""
    out = text
    for pos, word, _ in sorted(mentions, key=lambda m: -m[0]):
        out = out[:pos] + " " + out[pos + len(word):]
    return re.sub(r"\s+", " ", out).strip()


def parse(text: str, history: list[dict] | None = None, max_chars: int = 2000) -> Query:
    """The one entry point. `history` is the chat so far ([{"role", "content", "case_ids"?}]); an
    assistant turn's case ids, when it carries them, say which cases a follow-up is about."""
    raw, note = clean(text, max_chars)
    if not raw:
        raise BadQuestion(EMPTY)
    query = _parse_one(raw, note)
    previous = _previous(history or [], max_chars)
    if previous is None or not _leans_on_history(query):
        return query
    shown = _shown(history or [])
    move = _move(query)
    kind = query.kind
    if move == "swap_district" and not names_a_kind(query.text):
        kind = previous.kind
    elif move == "other_districts":
        kind = "list_districts"
    elif move == "same_case" and query.wants:
        kind = "fact_number" if query.wants == "year" else "what_measure"
    return replace(query, kind=kind, follow=Follow(previous, shown, move, _last_answer(history or [])))


def _parse_one(raw: str, note: str = "") -> Query:
    lang = language(raw)
    # The glossary also reads the English words of a mixed question ("Compare Minhang's 企业服务专员
    # and Baoshan's 代办专员" has more Han than Latin letters).
    translated = from_english(raw)
    text = SHORT_YEAR.sub(r"20\1", normalise(translated))
    # The glossary's Chinese words stand in front of the first clause, an aside's ("Suzhou" → 苏州) with
    # the question's: dropping an aside could drop them, so a question they were added to has no
    # narrower focus than its whole text.
    about = "" if translated != raw else ",".join(_about(_clauses(text)))
    kind = detect_kind(text)
    bare = unquoted(text)
    mentions = place_mentions(bare)
    asked, passing = places(bare)
    if kind == "which_district":
        # Who asks which district did something does not know it: a district the question names
        # is where the asker or a friend is ("朋友在金山…，哪个区有早餐圆桌"), not the answer's filter.
        asked, passing = (), tuple(dict.fromkeys(passing + asked))
    named = tuple(d for _, word, d in mentions if d in asked and _district_name(word, d))
    years = tuple(int(y) for y in YEAR.findall(text))
    kinds, asked_in = asks(text)
    wants = next((w for w, p in WANTS if p.search(text.lower())), "")
    return Query(raw=raw, text=text, language=lang, kind=kind, districts=asked,
                 named=tuple(dict.fromkeys(named)),
                 mentioned=passing, elsewhere=elsewhere(text), years=years, collection=collection(text),
                 figures=figures(text), asks=kinds, asked_in=asked_in, stated=stated(text),
                 quoted=programme_names(text, lang),
                 wants=wants, topic=topic(text, mentions), about=about,
                 rest=without_collection(text), note=note)


def names_a_kind(text: str) -> bool:
    """The question's own words name a kind (as opposed to "那松江区呢？", which borrows one)."""
    return any(p.search(text.lower()) for _, p in KIND_RULES)


def _previous(history: list[dict], max_chars: int) -> Query | None:
    """The last user turn that stood on its own: a follow-up's topic is the original question's."""
    users = [m for m in history if m.get("role") == "user" and str(m.get("content") or "").strip()]
    parsed = []
    for m in users[-4:]:
        text, _ = clean(str(m["content"]), max_chars)
        if text:
            parsed.append(_parse_one(text))
    standing = [q for q in parsed if not _leans_on_history(q)]
    return (standing or parsed or [None])[-1]


def _leans_on_history(query: Query) -> bool:
    """A question that needs the turn before: anaphora, or too short to stand alone."""
    low = query.text.lower()
    if ANAPHORA.search(low) or any(p.search(low) for move, p in MOVES if move in ("earlier", "later")):
        return True
    # "哪些区搞了企业代办服务？" asks which district about a topic of its own; "那松江区呢" or
    # "上线以来受理了多少件？" does not stand without the turn before.
    asks_where = query.kind in ("which_district", "list_districts") and len(query.topic) >= 8
    return not (query.quoted or len(query.topic) > 14 or asks_where)


def _move(query: Query) -> str:
    low = query.text.lower()
    for move, pattern in MOVES:
        if pattern.search(low):
            return move
    if query.districts:
        return "swap_district"
    return "same_case"


def _last_answer(history: list[dict]) -> str:
    replies = [str(m.get("content") or "") for m in history if m.get("role") == "assistant"]
    return replies[-1].strip().split("\n")[0] if replies else ""


def _shown(history: list[dict]) -> tuple[str, ...]:
    """The case ids of the last answer, when the history carries them."""
    for m in reversed(history):
        if m.get("role") == "assistant":
            ids = m.get("case_ids")
            if isinstance(ids, list):
                return tuple(str(i) for i in ids if isinstance(i, str))
            return ()
    return ()
