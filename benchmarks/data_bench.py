"""Data-stage benchmark (issue 2): metadata -> posts -> manifest -> captions at full scale.

Input: the full-scale synthetic HakuBooru DB (7,349,999 posts, ~30 tags each), built once into
benchmarks/.cache/ by `kxl.metadata.synth.make_full_scale_db` (minutes; not timed here).
kxl: the four stage CLIs with the Epsilon config sections, each in a fresh process (wall time and
peak RSS per stage; the chain's total and its largest peak).
Baseline: a plain row-by-row sqlite3 + Python version of the same work (cursor over posts,
`random.sample` per range, per-post filter, one relation query per kept post, caption assembled
in Python), measured in the same run on the first `fraction` of the id space and extrapolated
linearly to the whole DB (a full row-by-row pass takes the better part of an hour).
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

import yaml

from benchmarks.util import run_measured

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"


def _db(quick: bool) -> Path:
    from kxl.metadata.config import SyntheticConfig
    from kxl.metadata.synth import make_full_scale_db, synthesize

    CACHE.mkdir(parents=True, exist_ok=True)
    if quick:
        db = CACHE / "danbooru-quick.db"
        if not db.exists():
            synthesize(db, SyntheticConfig(seed=0, n_posts=200_000, max_id=7_349_999))
        return db
    db = CACHE / "danbooru-full.db"
    if not db.exists():
        make_full_scale_db(db)
    return db


def _epsilon_sections() -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "epsilon.yaml").read_text())
    sections = {k: json.dumps(cfg[k]) for k in ("posts", "manifest", "captions")}
    return {**sections, "seed": cfg["seed"]}


def _quick_posts_section(db: Path) -> str:
    """Epsilon's shape scaled to the quick DB's populations (counts must fit)."""
    con = sqlite3.connect(db)
    n1 = con.execute("SELECT count(*) FROM post WHERE id < 2000000").fetchone()[0]
    n2 = con.execute("SELECT count(*) FROM post WHERE id >= 2000000 AND id < 5000000").fetchone()[0]
    con.close()
    return json.dumps({"mode": "sample", "ranges": [
        {"start": 0, "stop": 2000000, "count": n1 // 2},
        {"start": 2000000, "stop": 5000000, "count": n2 * 2 // 3},
        {"start": 5000000, "stop": None, "count": "all"}]})


def _kxl_chain(db: Path, out: Path, sections: dict) -> list[dict]:
    m = out / "metadata"
    steps = [
        ("export-metadata", ["export-metadata", "--db", str(db), "--out-dir", str(m)]),
        ("select-posts", ["select-posts", "--posts", f"{m}/posts.parquet", "--config-json",
                          sections["posts"], "--seed", str(sections["seed"]),
                          "--out", f"{out}/selected.parquet", "--summary", f"{out}/sel.json"]),
        ("build-manifest", ["build-manifest", "--selected", f"{out}/selected.parquet",
                            "--posts", f"{m}/posts.parquet", "--tags", f"{m}/tags.parquet",
                            "--post-tags", f"{m}/post_tags.parquet", "--config-json",
                            sections["manifest"], "--out-kept", f"{out}/kept.parquet",
                            "--out-dropped", f"{out}/dropped.parquet",
                            "--summary", f"{out}/man.json"]),
        ("make-captions", ["make-captions", "--kept", f"{out}/kept.parquet", "--tags",
                           f"{m}/tags.parquet", "--config-json", sections["captions"],
                           "--out", f"{out}/captions.parquet"]),
    ]
    rows = []
    for name, argv in steps:
        r = run_measured(f"from kxl.cli import main; assert main({argv!r}) == 0")
        rows.append({"name": f"kxl {name}", "seconds": r["seconds"],
                     "peak_rss_mb": r["peak_rss_mb"]})
    return rows


_BASELINE = r'''
import random, sqlite3
db, cut, seed = {db!r}, {cut}, {seed}
con = sqlite3.connect(db)
tags = {{i: (n, t) for i, n, t in con.execute("SELECT id, name, type FROM tag")}}
ranges = [(0, 2000000, 0.5), (2000000, 5000000, 2 / 3), (5000000, 10**12, None)]
pops = [[] for _ in ranges]
for row in con.execute("SELECT id, md5, file_ext, is_deleted, is_banned, file_url, rating, "
                       "fav_count, created_at FROM post WHERE id < ? ORDER BY id", (cut,)):
    for i, (a, b, _) in enumerate(ranges):
        if a <= row[0] < b:
            pops[i].append(row)
rng = random.Random(seed)
selected = []
for pop, (_, _, frac) in zip(pops, ranges):
    selected += pop if frac is None else rng.sample(pop, int(len(pop) * frac))
kept = [p for p in selected if not p[3] and not p[4] and p[1] and p[5]
        and p[2] in ("jpg", "jpeg", "png", "webp")]
caps = []
for p in kept:
    by_type = {{0: [], 1: [], 2: [], 3: [], 4: []}}
    for (tid,) in con.execute("SELECT tag_id FROM posttagrelation WHERE post_id = ?", (p[0],)):
        name, typ = tags[tid]
        by_type[typ].append(name.replace("_", " ") if len(name) > 3 else name)
    keep = by_type[2] + by_type[3] + [a for a in by_type[1] if "banned" not in a]
    caps.append(", ".join(keep) + ", |||" + ", ".join(by_type[0] + by_type[4]))
print('{{"posts_seen": %d}}' % sum(len(p) for p in pops))
'''


def _baseline(db: Path, fraction: float, seed: int) -> dict:
    con = sqlite3.connect(db)
    n_total = con.execute("SELECT count(*) FROM post").fetchone()[0]
    (cut,) = con.execute(
        "SELECT id FROM post ORDER BY id LIMIT 1 OFFSET ?", (int(n_total * fraction),)
    ).fetchone()
    con.close()
    r = run_measured(_BASELINE.format(db=str(db), cut=cut, seed=seed))
    scale = n_total / r["posts_seen"]
    return {"name": "row-by-row sqlite3 baseline", "seconds": r["seconds"] * scale,
            "peak_rss_mb": r["peak_rss_mb"],
            "note": f"measured on {r['posts_seen']:,} of {n_total:,} posts "
                    f"({r['seconds']:.1f} s), extrapolated x{scale:.1f}"}


def run(quick: bool) -> list[dict]:
    db = _db(quick)
    sections = _epsilon_sections()
    if quick:
        sections["posts"] = _quick_posts_section(db)
    with tempfile.TemporaryDirectory(prefix="kxl-data-bench-") as tmp:
        rows = _kxl_chain(db, Path(tmp), sections)
    base = _baseline(db, 0.2 if quick else 0.02, sections["seed"])
    total = sum(r["seconds"] for r in rows)
    peak = max(r["peak_rss_mb"] for r in rows)
    rows.append({"name": "kxl data stage total", "seconds": total, "peak_rss_mb": peak,
                 "ratio_vs_baseline": base["seconds"] / total,
                 "note": "speed-up = baseline seconds / kxl seconds"})
    return [*rows, base]
