"""Stage 2 `choices` mode == the HakuBooru Kohaku XL Delta script (kohaku_xl.py).

The reference algorithm, as that script runs it: `seed_everything(1)` seeds Python's global
`random` (random.seed(1)); then `list(posts >= 5M) + choices(posts in [3M, 5M), k=1M) +
choices(posts < 3M, k=1M)`, each population in id order (peewee query, SQLite rowid order),
with replacement. Here it runs literally (global random.seed + random.choices on id lists) on
a scaled-down population and is compared with kxl's vectorised stream.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kxl.errors import KxlError
from kxl.posts import rng
from kxl.posts.config import IdRange
from kxl.posts.select import select_posts

# Delta's ranges in the script's evaluation order, as a kxl config lists them.
DELTA = [IdRange(5_000_000, None, "all"), IdRange(3_000_000, 5_000_000, 1_000_000),
         IdRange(0, 3_000_000, 1_000_000)]


@pytest.fixture
def global_random() -> Iterator[None]:
    """The reference uses the global RNG; leave it as found for other tests."""
    state = random.getstate()
    yield
    random.setstate(state)


def delta_reference(ids: list[int], seed: int, k_mid: int, k_low: int) -> list[int]:
    """kohaku_xl.py's selection, literally: global seed, then list + choices + choices."""
    random.seed(seed)  # what pytorch_lightning.seed_everything(seed) does to `random`
    return (
        [i for i in ids if i >= 5_000_000]
        + random.choices([i for i in ids if 3_000_000 <= i < 5_000_000], k=k_mid)
        + random.choices([i for i in ids if i < 3_000_000], k=k_low)
    )


@pytest.mark.usefixtures("global_random")
@pytest.mark.parametrize("seed", [1, 0, 1337, 2**40 + 3])
def test_equals_the_delta_script_on_a_small_population(seed: int) -> None:
    ids = sorted(np.random.default_rng(7).choice(7_350_000, 3000, replace=False).tolist())
    k_mid, k_low = 700, 2500  # k_low > population: duplicates certain, as in Delta
    ranges = [DELTA[0], IdRange(3_000_000, 5_000_000, k_mid), IdRange(0, 3_000_000, k_low)]
    sel = select_posts(np.array(ids), ranges, "choices", seed)
    assert sel.table["id"].to_list() == delta_reference(ids, seed, k_mid, k_low)


@pytest.mark.usefixtures("global_random")
def test_equals_the_delta_script_at_its_real_counts() -> None:
    # 1M draws per range as in the script, over a sparse 50k-post population.
    ids = sorted(np.random.default_rng(3).choice(7_350_000, 50_000, replace=False).tolist())
    sel = select_posts(np.array(ids), DELTA, "choices", 1)
    assert sel.table["id"].to_list() == delta_reference(ids, 1, 1_000_000, 1_000_000)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**70), st.lists(st.tuples(st.integers(1, 10**7), st.integers(0, 300)),
                                       min_size=1, max_size=4))
def test_vectorised_stream_equals_random_choices(seed: int, draws: list[tuple[int, int]]) -> None:
    ref = random.Random(seed)
    gen = rng.python_random_generator(seed)
    for n, k in draws:  # consecutive calls share one stream, like the script's two choices()
        assert rng.choices_draws(gen, n, k).tolist() == ref.choices(range(n), k=k)


def test_all_ranges_consume_no_randomness() -> None:
    ids = np.arange(0, 100, dtype=np.int64)
    a = select_posts(ids, [IdRange(0, 50, 20), IdRange(50, None, 30)], "choices", 9).table
    b = select_posts(ids, [IdRange(90, None, "all"), IdRange(0, 50, 20), IdRange(50, 90, 30)],
                     "choices", 9).table
    assert a.filter(range_index=0)["id"].equals(b.filter(range_index=1)["id"])


@settings(max_examples=40, deadline=None)
@given(st.sets(st.integers(0, 1000), min_size=1, max_size=200), st.integers(0, 500),
       st.integers(0, 2**32))
def test_choices_length_and_duplicates_are_counted(ids: set[int], k: int, seed: int) -> None:
    arr = np.array(sorted(ids))
    ranges = [IdRange(0, 500, k if (arr < 500).any() else 0), IdRange(500, None, "all")]
    sel = select_posts(arr, ranges, "choices", seed)
    n_high = int((arr >= 500).sum())
    assert sel.table.height == ranges[0].count + n_high
    low = sel.table.filter(range_index=0)["id"]
    assert low.is_in(arr[arr < 500].tolist()).all()
    r0 = sel.summary["ranges"][0]
    assert (r0["drawn"], r0["unique"], r0["duplicates"]) == (
        low.len(), low.n_unique(), low.len() - low.n_unique())
    assert sel.summary["duplicates"] == r0["duplicates"]


def test_choices_from_an_empty_population_is_a_config_error() -> None:
    with pytest.raises(KxlError, match=r"ranges\[0\] \[0, 10\): population is 0"):
        select_posts(np.array([50, 60]), [IdRange(0, 10, 3)], "choices", 1)
