import hashlib
import json
import re
from collections import Counter

import pytest

from rag.config import REPO_SEEDS
from rag.corpus import _infer_district, case_text, clean, load_cases, read_lines

SHARED = REPO_SEEDS.parent.parent / "shared" / "seeds"


@pytest.fixture(scope="module")
def cases():
    return load_cases(REPO_SEEDS)


def by_id(cases):
    return {c.id: c for c in cases}


def test_seeds_are_byte_identical_to_shared():
    if not SHARED.exists():
        pytest.skip("../shared/seeds not beside this checkout")
    for src in SHARED.glob("*.txt"):
        ours = REPO_SEEDS / src.name
        assert hashlib.sha256(ours.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()


def test_manifest_describes_every_seed():
    manifest = json.loads((REPO_SEEDS / "manifest.json").read_text(encoding="utf-8"))
    files = {d["file"] for d in manifest["documents"]}
    assert files == {p.name for p in REPO_SEEDS.glob("*.txt")}
    for doc in manifest["documents"]:
        assert doc["kind"] in {"case_collection", "action_plan", "report"}
        assert {"title", "year", "issuer"} <= doc.keys()


def test_case_counts_per_document(cases):
    per_source = Counter(c.source[:3] for c in cases)
    assert per_source == {"000": 7, "001": 20, "002": 21, "003": 1, "004": 1}


def test_explicit_districts(cases):
    c = by_id(cases)
    assert [c[f"2019-0{i}"].district for i in range(1, 8)] == [
        "浦东新区", "徐汇区", "徐汇区", "虹口区", "杨浦区", "金山区", "奉贤区"]
    # 2021 districts come from the table of contents, two cases for some districts.
    assert c["2021-01"].district == c["2021-02"].district == "浦东新区"
    assert c["2021-05"].district == c["2021-06"].district == "徐汇区"
    assert c["2021-10"].district == "虹口区"
    assert c["2021-20"].district == "崇明区"
    assert c["xuhui-plan"].district == "徐汇区"
    assert c["jingan-report"].district == "静安区"


def test_inferred_2022_districts_with_evidence(cases):
    c = by_id(cases)
    expected = {
        "2022-e01": "嘉定区", "2022-e02": "浦东新区", "2022-e03": "闵行区", "2022-e04": "徐汇区",
        "2022-e05": "虹口区", "2022-e06": "黄浦区", "2022-e07": "奉贤区", "2022-e08": "金山区",
        "2022-e09": "青浦区", "2022-e10": "宝山区", "2022-e11": "杨浦区",
        "2022-g01": "浦东新区", "2022-g02": "闵行区", "2022-g03": "虹口区", "2022-g04": "奉贤区",
        "2022-g05": "金山区", "2022-g06": "静安区", "2022-g07": "长宁区", "2022-g08": None,
        "2022-g09": "崇明区", "2022-g10": "普陀区",
    }
    assert {k: c[k].district for k in expected} == expected
    for k, district in expected.items():
        if district:
            assert district in c[k].district_evidence
    assert "未出现" in c["2022-g08"].district_evidence


def test_gazetteer_decides_when_no_district_is_named():
    lines = read_lines(REPO_SEEDS / "002_38cb2aa36db34ad2.txt")
    # Real sentences that name only places: 紫竹/大零号湾/虹桥前湾 lie in 闵行, 漕河泾 in 徐汇.
    assert _infer_district(clean(lines[100]))[0] == "闵行区"
    assert _infer_district(clean(lines[123]).replace("徐汇区", ""))[0] == "徐汇区"
    assert _infer_district("临港新片区设立两周年以来")[0] == "浦东新区"
    assert _infer_district("黄浦江两岸")[0] is None


def test_duplicate_entry_is_kept_once(cases):
    dup = [c for c in cases if c.duplicates]
    assert [(c.id, c.duplicates) for c in dup] == [("2022-g03", ((387, 409),))]
    lines = read_lines(REPO_SEEDS / dup[0].source)
    a, b = dup[0].lines, dup[0].duplicates[0]
    assert lines[a[0] - 1:a[1]] == lines[b[0] - 1:b[1]]


def test_spans_start_with_title_and_do_not_overlap(cases):
    for c in cases:
        text = re.sub(r"\s+", "", case_text(c, REPO_SEEDS))
        text = re.sub(r"^(案例[一二三四五六七八九十]+|排名\d+)", "", text)
        assert text.startswith(re.sub(r"\s+", "", c.title)), c.id
    spans = sorted((c.source, c.lines) for c in cases)
    for (s1, (a1, b1)), (s2, (a2, b2)) in zip(spans, spans[1:]):
        assert a1 <= b1
        assert s1 != s2 or b1 < a2


def test_the_table_of_contents_is_not_a_case(cases):
    first_2021 = min(c.lines[0] for c in cases if c.year == 2021)
    assert clean(read_lines(REPO_SEEDS / "001_5e0a4a466f8b54b5.txt")[first_2021 - 1]) == "案例一"
    assert first_2021 > 87


def test_sections_are_heading_paths_inside_the_case(cases):
    c = by_id(cases)
    plan = c["xuhui-plan"]
    paths = [s.path for s in plan.sections]
    assert ("二、重点任务", "(七)着力打造优质普惠的企业全生命周期服务", "1.优化涉企高频事项。") in paths
    for case in cases:
        for s in case.sections:
            assert case.lines[0] <= s.lines[0] <= s.lines[1] <= case.lines[1]
    assert any(s.path == ("二、主要做法",) for s in c["2021-12"].sections)


def test_artefacts_are_stripped_but_lines_stay_true(cases):
    c = by_id(cases)["2019-02"]
    lines = read_lines(REPO_SEEDS / c.source)
    assert "[bookmark" in lines[c.lines[0] - 1]
    assert "[bookmark" not in case_text(c, REPO_SEEDS)
    assert clean(lines[c.lines[0] - 1]) == c.title


def _seeds_with(tmp_path, name, content: bytes):
    import shutil

    seeds = tmp_path / "seeds"
    shutil.copytree(REPO_SEEDS, seeds)
    manifest = json.loads((seeds / "manifest.json").read_text(encoding="utf-8"))
    manifest["documents"].append({"file": name, "id": "x", "title": "x", "year": 2023, "issuer": None,
                                  "district": None, "kind": "report", "layout": "document", "title_line": 1})
    (seeds / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    if "/" not in name:
        (seeds / name).write_bytes(content)
    return seeds


@pytest.mark.parametrize("name,content,message", [
    ("../../etc/passwd", b"", "不能含路径"),
    ("/etc/passwd", b"", "不能含路径"),
    ("latin1.txt", "上海".encode("gbk"), "不是 UTF-8"),
    ("huge.txt", b"a" * 5_000_001, "文档过大"),
])
def test_user_documents_are_checked_before_reading(tmp_path, name, content, message):
    from rag.corpus import CorpusError

    seeds = _seeds_with(tmp_path, name, content)
    with pytest.raises(CorpusError, match=message):
        load_cases(seeds)


def test_a_user_document_is_read_as_text(tmp_path):
    seeds = _seeds_with(tmp_path, "extra.txt", "某区新做法\n一、主要做法\n1、推出新服务。".encode())
    extra = [c for c in load_cases(seeds) if c.source == "extra.txt"]
    assert extra[0].title == "某区新做法" and extra[0].lines == (1, 3)


def test_describe_reads_each_seed_as_its_manifest_lays_it_out():
    """The numbered-titles layout must not take the seeds' plans and reports, whose sections are
    numbered the same way, for case collections."""
    from rag.corpus import describe, load_manifest

    for doc in load_manifest(REPO_SEEDS)["documents"]:
        assert describe(doc["id"], doc["file"], list(read_lines(REPO_SEEDS / doc["file"])), doc["title"])["layout"] \
            == doc["layout"], doc["id"]


@pytest.mark.parametrize("shape", ["label", "sentence"])
def test_a_collection_headed_by_numbered_titles_splits_into_the_same_cases(shape):
    from seed_files import numbered_2019

    from rag.corpus import _parse_titled, describe

    lines = numbered_2019(shape)
    entry = describe("numbered", "numbered.txt", lines)
    assert entry["layout"] == "numbered_titles" and entry["year"] == 2019
    want = [c for c in load_cases(REPO_SEEDS) if c.document == "2019"]
    got = _parse_titled(entry, lines)
    assert [c.district for c in got] == [c.district for c in want]
    assert all(g.title.endswith(w.title) for g, w in zip(got, want))
    # The evidence names the title's line and the word that gave the district.
    for c in got:
        assert c.district_evidence.startswith(f"第{c.lines[0]}行标题：")
        assert (c.district if shape == "label" else f"“{c.district[:2]}”→{c.district}") in c.district_evidence
