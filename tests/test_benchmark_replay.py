"""The search-replay benchmark's machinery (benchmarks/tables/) on a synthetic table in the recorded format:
the mapping of proposed configurations onto the table, curve interpolation, the table trainer inside lmtune's
tuner loop (budget held, selection read back), and the peers. The recorded tables themselves and the
replayed numbers are benchmark output (docs/benchmarks/search-replay.md), not asserted here."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import make_rows

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

from tables import arms
from tables.record import DESIGN_SEEDS, configurations
from tables.synthetic import write_synthetic
from tables.table import Table
from tables.tasks import split_by_group


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Table:
    return Table(write_synthetic(tmp_path_factory.mktemp("tables") / "syn", configs=24))


def test_the_design_starts_with_the_default_and_extends_without_changing_its_points() -> None:
    a, b = configurations(24), configurations(48)
    assert a[0] == {"learning_rate": 5e-5, "batch_size": 32, "epochs": 2, "weight_decay": 0.0, "warmup_ratio": 0.0}
    assert b[:24] == a
    # a table recorded with its own design seed shares the default, and no other point, with the first ones
    own = configurations(48, seed=DESIGN_SEEDS["stsb_pair"])
    assert own[0] == a[0] and not {str(c) for c in own[1:]} & {str(c) for c in b[1:]}
    assert {c["epochs"] for c in b} == {1, 2, 3} and {c["batch_size"] for c in b} == {8, 16, 32}


def test_groups_never_straddle_splits() -> None:
    rows = [(f"g{i // 3}", {"text": f"t{i}", "label": str(i % 2)}) for i in range(9000)]
    splits = split_by_group(rows)
    groups = {s: {r["text"] for r in v} for s, v in splits.items()}
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [1500, 500, 1000]
    owner = {f"t{i}": f"g{i // 3}" for i in range(9000)}
    seen = [{owner[t] for t in groups[s]} for s in groups]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])


def test_a_proposal_trains_the_nearest_recorded_configuration_of_its_own_length(table: Table) -> None:
    for i in table.ids:
        c = table.configs[i]
        assert table.nearest(c, float(c["epochs"])) == i  # a recorded configuration maps onto itself
    c = dict(table.configs[0], learning_rate=table.configs[0]["learning_rate"] * 1.01)
    assert table.nearest(c, 2.0) == 0
    assert table.configs[table.nearest(c, 3.0)]["epochs"] == 3


def test_a_search_trains_each_recorded_configuration_once_before_any_twice(table: Table) -> None:
    mapping = table.mapper()
    c = dict(table.configs[0], learning_rate=table.configs[0]["learning_rate"] * 1.01)
    first = mapping(c, 2.0)
    assert first == 0 and mapping(dict(c), 2.0) == 0  # the same settings again (a trial read again): the same run
    near = dict(c, learning_rate=c["learning_rate"] * 1.001)  # other settings nearest the same run: the next nearest
    second = mapping(near, 2.0)
    assert second != 0 and table.configs[second]["epochs"] == 2
    same_length = [i for i in table.ids if table.configs[i]["epochs"] == 2]
    got = {mapping(dict(c, learning_rate=c["learning_rate"] * (1 + k / 1000)), 2.0) for k in range(2, 2 + 40)}
    assert got | {0, second} == set(same_length)  # every run of that length once, then repeats
    plain = table.mapper(distinct=False)
    assert plain(c, 2.0) == plain(near, 2.0) == 0


def test_a_length_between_the_recorded_ones_trains_the_next_longer_runs_prefix(table: Table) -> None:
    i = table.nearest(table.configs[0], 1.47)
    assert table.configs[i]["epochs"] == 2
    run = table.run(i, 0)
    half = run.points[-1]["examples"] * 0.75
    tests = [p for p in run.points if table.test_metric in p]
    assert min(p[table.test_metric] for p in tests) <= table.test_score(i, 0, half) <= max(
        p[table.test_metric] for p in tests)
    assert table.test_score(i, 0, run.points[-1]["examples"]) == table.test_score(i, 0)
    with pytest.raises(KeyError):
        table.nearest(table.configs[0], 3.5)


def test_curves_interpolate_between_points_and_end_exactly(table: Table) -> None:
    run = table.run(0, 0)
    a, b = run.points[0], run.points[1]
    mid = run.at((a["examples"] + b["examples"]) / 2)
    assert mid["eval_accuracy"] == pytest.approx((a["eval_accuracy"] + b["eval_accuracy"]) / 2)
    assert run.at(10**9) == run.final and "test_accuracy" in run.final


def _data_for(table: Table, tmp_path: Path) -> Path:
    """A data folder for a replayed lmtune study: the table answers every trial; the study sees as many train
    rows as the table has."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for split, n in (("train", table.rows), ("validation", 50), ("test", 50)):
        with (data / f"{split}.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["text", "label"])
            w.writeheader()
            w.writerows(make_rows(n))
    return data


@pytest.mark.parametrize("strategy", ["auto", "asha"])
def test_lmtune_replays_through_its_own_tuner_within_the_budget(table: Table, strategy: str,
                                                               tmp_path: Path) -> None:
    data = _data_for(table, tmp_path)
    unit = table.default_tokens(0)
    r = arms.lmtune_arm(table, 0, strategy, 5 * unit, 0, data, tmp_path / "work")
    assert r.selected is not None and r.trials >= 2
    assert r.spent_tokens <= 5 * unit * 1.01  # the token cap's documented slack
    assert r.test == table.test_score(r.selected, 0)


def test_the_peers_replay_in_milliseconds_and_spend_at_most_their_budget(table: Table) -> None:
    unit = table.default_tokens(0)
    for peer in (arms.peer_optuna_hyperband, arms.random_search, arms.one_epoch_topk):
        r = peer(table, 1, 3 * unit, 0)
        assert r.selected is not None, peer.__name__
        assert r.spent_tokens <= 3 * unit, peer.__name__
        assert r.seconds < 5


def test_a_peer_search_replayed_again_selects_the_same_and_pays_the_same(table: Table) -> None:
    """Hyperband's brackets hash the study's name: an unnamed study (HF's) gets a random one, and the same seed
    pruned other trials run after run. The replayed peer names its study after the seed."""
    unit = table.default_tokens(0)
    for seed in range(6):
        a, b = (arms.peer_optuna_hyperband(table, seed, 20 * unit, seed) for _ in range(2))
        assert (a.selected, a.spent_tokens, a.pruned) == (b.selected, b.spent_tokens, b.pruned), seed


def test_a_recorded_run_has_8_validation_and_4_test_points_per_epoch(tiny_model: Path, tiny_csv: Path,
                                                                    tmp_path: Path) -> None:
    from tables.record import record_run
    from transformers import AutoTokenizer

    from lmtune.data.sources import DataSpec
    from lmtune.data.tokenized import build_cache

    spec = DataSpec(dataset=str(tiny_csv), dataset_config=None, text_column="text", text_pair_column=None,
                    label_column="label", sizes={"train": 64, "validation": 16, "test": 16}, seed=0)
    cache = build_cache(spec, AutoTokenizer.from_pretrained(tiny_model), str(tiny_model), 16, tmp_path / "c")
    config = {"learning_rate": 1e-3, "batch_size": 8, "epochs": 2, "weight_decay": 0.0, "warmup_ratio": 0.1}
    run = record_run(cache, str(tiny_model), config, seed=0, rows=64)
    points = run["points"]
    assert [p["units"] for p in points] == list(range(1, 17))  # 8 per epoch, 2 epochs
    assert [p["examples"] for p in points] == [8 * u for u in range(1, 17)]
    assert [u for u, p in enumerate(points, 1) if "test_accuracy" in p] == list(range(2, 17, 2))
    assert points[-1]["tokens"] == run["train_tokens"] and run["error"] is None
    assert all({"eval_loss", "eval_accuracy", "train_loss"} <= set(p) for p in points)


def test_dodge_expected_best_starts_at_the_mean_and_ends_at_the_validation_best(table: Table) -> None:
    from tables.replay import dodge

    curve = dodge(table, 0, n_max=400)
    tests = [table.test_score(i, 0) for i in table.ids]
    assert curve[0] == pytest.approx(sum(tests) / len(tests))
    best_by_validation = max(table.ids, key=lambda i: table.run(i, 0).final["eval_accuracy"])
    assert curve[-1] == pytest.approx(table.test_score(best_by_validation, 0), abs=1e-3)


def test_the_summary_has_the_form_the_bench_check_reads(table: Table, tmp_path: Path) -> None:
    from tables.replay import cell, markdown, summarize

    cells = [cell(table, arm, 3, [0, 1, 2], tmp_path, tmp_path / "w")
             for arm in ("peer_optuna_hyperband", "random_search", "one_epoch_topk")]
    cells.append(dict(cells[1], arm="auto"))  # a stand-in: the paired comparison needs an "auto" arm
    s = summarize(cells)
    for arm in ("peer_optuna_hyperband", "random_search", "one_epoch_topk", "auto"):
        v = s[arm]
        assert v["seeds"] == 3 and v["regret_ci95"][0] <= v["regret_mean"] <= v["regret_ci95"][1]
        assert 0 < v["budget_spent"] <= 1 and v["replay_s_per_search"] < 5 and v["regret_mean"] >= 0
    assert s["random_search"]["vs_auto"]["mean"] == 0
    # with the table, each paired difference also carries the recording's own noise, around the same mean
    for arm, v in summarize(cells, table).items():
        if arm != "auto":
            d = v["vs_auto"]
            lo, hi = d["ci95_with_recording"]
            assert lo <= d["ci95"][0] <= d["mean"] <= d["ci95"][1] <= hi
    text = markdown({"tables": {"syn": {"metric": "test_accuracy", "configurations": 24, "seeds": 2,
                                        "recorded_on": "synthetic"}}, "results": {"syn": {"3": s}}})
    assert "| peer_optuna_hyperband |" in text and "3x" in text


def test_the_seed_spread_is_the_difference_between_a_configurations_two_recorded_runs(table: Table) -> None:
    """``seed_spread``: mean |test(seed 0) - test(seed 1)| over the configurations, the standard deviation it
    implies, and the same over the top third by mean score (what searches end between)."""
    def test(i: int, seed: int) -> float:
        return float(table.runs[(i, seed)].final[table.test_metric])

    d = [test(i, 0) - test(i, 1) for i in table.ids]
    s = table.seed_spread()
    assert s["mean_abs_diff"] == pytest.approx(sum(abs(x) for x in d) / len(d))
    assert s["sd"] == pytest.approx((sum(x * x for x in d) / len(d) / 2) ** 0.5)
    top = sorted(table.ids, key=lambda i: -(test(i, 0) + test(i, 1)))[:len(table.ids) // 3]
    assert s["top_third_mean_abs_diff"] == pytest.approx(sum(abs(test(i, 0) - test(i, 1)) for i in top) / len(top))


def test_a_world_trains_each_configuration_at_one_recorded_seed_drawn_per_configuration(table: Table) -> None:
    """World w gives each configuration one of its recorded seeds, the same draw every time it is asked (every
    arm of search seed w meets the same runs), and different configurations of one world draw different seeds,
    so a hundred worlds are not two."""
    draws = {w: [table.seed_in(i, w) for i in table.ids] for w in range(100)}
    assert draws == {w: [table.seed_in(i, w) for i in table.ids] for w in range(100)}
    assert all(set(d) == {0, 1} for d in draws.values())  # each world mixes the two recorded seeds
    assert len({tuple(d) for d in draws.values()}) == 100
    share = sum(sum(d) for d in draws.values()) / (100 * len(table.ids))
    assert 0.4 < share < 0.6
    i = table.ids[3]
    assert table.run(i, 7) is table.runs[(i, table.seed_in(i, 7))]


def test_the_plots_draw_each_arms_regret_where_its_number_puts_it(tmp_path: Path) -> None:
    """The replay's SVG plots (tables/plots.py): one line per drawn arm, a lower regret drawn lower down (log
    scale), the interval around the mean, and the expected-best curve with one point per n."""
    import xml.etree.ElementTree as ET

    from tables.plots import write_plots

    budgets = ["1", "2", "5"]
    auto = [0.04, 0.02, 0.01]
    peer = [0.10, 0.05, 0.03]
    results = {b: {name: {"seeds": 100, "regret_mean": r[i], "regret_ci95": [r[i] * 0.8, r[i] * 1.2],
                          "test_mean": 0.9 - r[i], "budget_spent": 0.99}
                   for name, r in (("auto", auto), ("random_search", peer))} for i, b in enumerate(budgets)}
    summary = {"tables": {"syn": {"metric": "test_accuracy", "configurations": 24, "seeds": 2,
                                  "best_test_mean": 0.91}},
               "results": {"syn": results}, "dodge": {"syn": [0.80 + 0.1 * (1 - 0.5 ** n) for n in range(64)]}}
    paths = write_plots(summary, tmp_path)
    assert sorted(p.name for p in paths) == ["syn-expected-best.svg", "syn-regret.svg"]
    ns = {"s": "http://www.w3.org/2000/svg"}
    svg = ET.parse(tmp_path / "syn-regret.svg").getroot()
    lines = svg.findall("s:polyline", ns)
    assert len(lines) == 2  # the two arms drawn
    auto_line = next(p for p in lines if p.get("stroke-width") == "3")
    ys = [float(xy.split(",")[1]) for xy in auto_line.get("points", "").split()]
    assert ys[0] < ys[1] < ys[2]  # regret falls with the budget: drawn lower down (SVG's y grows downwards)
    # auto's regret is below the peer's at every budget: drawn below it (a larger y)
    peer_line = next(p for p in lines if p is not auto_line)
    peer_ys = [float(xy.split(",")[1]) for xy in peer_line.get("points", "").split()]
    assert all(a > p for a, p in zip(ys, peer_ys, strict=True))
    titles = [t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert any("lmtune auto at 2×: 2.00 [1.60, 2.40]" in t for t in titles)  # in points, with the interval
    best = ET.parse(tmp_path / "syn-expected-best.svg").getroot()
    curve = next(p for p in best.findall("s:polyline", ns) if p.get("stroke") == "#000")
    assert len(curve.get("points", "").split()) == 64


def test_pbt_live_is_sized_to_its_budget_with_at_least_the_population_asked(table: Table) -> None:
    """Issue 31's live PBT arm (tables/live_check.py): each member trains the longest recorded length at which
    the population fits in the budget, and as many members as fit at it."""
    from tables.live_check import pbt_sizing

    default = table.default_tokens(0)  # 2 epochs
    # 1 % held back (lmtune refuses a population its token cap cannot finish, by its own estimate)
    assert pbt_sizing(table, 5 * default, 0, 8) == (9, 1)  # 10 epochs: 8 x 2 do not fit, 9 x 1 do
    assert pbt_sizing(table, 10 * default, 0, 8) == (9, 2)  # 20 epochs: 8 x 3 do not fit, 9 x 2 do
    assert pbt_sizing(table, 20 * default, 0, 8) == (13, 3)
    assert pbt_sizing(table, 1 * default, 0, 8) == (8, 1)  # nothing fits: the population at the shortest


def test_the_live_summary_has_the_form_the_auto_check_reads(tmp_path: Path) -> None:
    import json

    from tables.live_check import summarize_live

    for arm, tests, tokens in (("auto", [0.80, 0.82], [100, 120]), ("peer", [0.79, 0.81], [330, 360])):
        for seed, (t, n) in enumerate(zip(tests, tokens, strict=True)):
            (tmp_path / f"syn-{arm}-s{seed}.json").write_text(json.dumps(
                {"task": "syn", "arm": arm, "seed": seed, "test": t, "train_tokens": n, "search_s": 1.0,
                 "budget": 1.0 if arm == "auto" else None}))
    live = summarize_live(tmp_path)
    assert live["syn"]["auto"]["seeds"] == 2 and live["syn"]["auto"]["test_mean"] == pytest.approx(0.81)
    assert live["syn"]["auto"]["train_tokens"] == 110 and live["syn"]["peer"]["train_tokens"] == 345
    lo, hi = live["syn"]["peer"]["test_ci95"]
    assert lo < 0.80 < hi and live["syn"]["peer"]["budget_mean"] is None


def test_auto_is_set_against_the_uncapped_peer_at_the_share_of_its_tokens_it_was_given() -> None:
    """`replay.against_the_peer`: the peer's cell at 20x (its 16 trials end before that budget) is what its
    users get; auto at budget B had B / (the peer's spend) of its tokens; the difference is paired by seed."""
    from tables.replay import against_the_peer

    def cell(arm: str, regrets: list[float], spent: float) -> dict[str, object]:
        return {"arm": arm, "rows": [{"seed": s, "regret": r, "spent": spent} for s, r in enumerate(regrets)]}

    cells = {3: {"auto": cell("auto", [0.03, 0.02, 0.04], 0.99)},
             20: {"auto": cell("auto", [0.01, 0.01, 0.01], 0.99),
                  "peer_optuna_hyperband": cell("peer_optuna_hyperband", [0.01, 0.02, 0.00], 0.45)}}
    vs = against_the_peer(cells)  # type: ignore[arg-type]
    assert vs["peer_spent_default_runs"] == pytest.approx(9.0)
    assert vs["3"]["share_of_peer_tokens"] == pytest.approx(1 / 3)
    assert vs["3"]["auto_minus_peer_regret"] == pytest.approx((0.02 + 0.0 + 0.04) / 3)
    assert vs["3"]["auto_worse"] == 2 and vs["3"]["auto_better"] == 0
    assert against_the_peer({3: cells[3]}) == {}  # no peer cell: nothing to compare


def test_auto_is_replayed_at_exactly_a_share_of_each_worlds_peer_tokens(table: Table, tmp_path: Path) -> None:
    """`replay.auto_at_share`: issue 31's live claim (auto at a third of the uncapped peer's tokens) replayed as
    stated, per world, instead of read off the whole-number budgets on either side of it. auto spends what the
    share gives it, so a smaller share trains fewer tokens in every world, and the pairing with the peer carries
    both intervals."""
    from tables.replay import at_share_against_the_peer, auto_at_share, cell

    data = _data_for(table, tmp_path)
    peer = cell(table, "peer_optuna_hyperband", 20, [0, 1], data, tmp_path / "w")
    spent: dict[float, list[float]] = {}
    for share in (0.6, 0.45):
        got = auto_at_share(table, peer, share, data, tmp_path / "w")
        assert got["budget"] == share and [r["seed"] for r in got["rows"]] == [0, 1]
        spent[share] = []
        for a, p in zip(got["rows"], peer["rows"], strict=True):
            given = p["spent"] * 20 * table.default_tokens(p["world"]) * share
            assert 0.9 <= a["spent"] <= 1.01, a  # it spends the share (the cap's 1 % slack)
            spent[share].append(a["spent"] * given)
        vs = at_share_against_the_peer(table, got, peer)
        assert vs["share_of_peer_tokens"] == share and vs["seeds"] == 2
        lo, hi = vs["ci95_with_recording"]
        assert lo <= vs["ci95"][0] <= vs["auto_minus_peer_regret"] <= vs["ci95"][1] <= hi
    assert all(small < large for small, large in zip(spent[0.45], spent[0.6], strict=True))


def test_the_halving_candidate_stays_in_its_budget_and_trains_one_schedule_length(table: Table) -> None:
    """tables/candidates.py's synchronous halving: every configuration it trains has the longest length, it
    spends at most its budget (continuation: a configuration that goes on pays only for its new units), and
    a larger budget tries more configurations."""
    from tables.candidates import halving

    unit = table.default_tokens(0)
    small, large = halving(table, 0, 3 * unit, 0), halving(table, 0, 10 * unit, 0)
    longest = max(table.configs[i]["epochs"] for i in table.ids)
    for r, budget in ((small, 3 * unit), (large, 10 * unit)):
        assert r.selected is not None and table.configs[r.selected]["epochs"] == longest
        assert 0 < r.spent_tokens <= budget
    assert large.trials > small.trials


SYNETUNE_VENVS = {"asha": "benchmarks/.venv-synetune", "bohb": "benchmarks/.venv-synetune",
                  "mobster": "benchmarks/.venv-synetune013", "dyhpo": "benchmarks/.venv-synetune013"}


@pytest.mark.slow  # a Syne Tune search per seed in its own environment
@pytest.mark.parametrize("scheduler", sorted(SYNETUNE_VENVS))
def test_syne_tune_spends_its_budget_in_train_tokens_not_in_its_own_seconds(scheduler: str, table: Table,
                                                                              tmp_path: Path) -> None:
    """Syne Tune's simulator adds the real seconds its scheduler spends deciding, and its loop's sleep steps, to
    the clock that is the token budget; at one unit per thousand tokens that left ASHA 10-30 % of the budget
    unspent on rotten_tomatoes and MOBSTER up to 40 % (its model fits take seconds), 2-6 % on this synthetic
    table. On train tokens, with neither counted, it spends the budget within a few percent (what the last
    trial trained after its last report within the budget is not counted) and reports nothing after it. Runs
    where `make bench-synetune` (ASHA, BOHB) or `make bench-synetune013` (MOBSTER, DyHPO) built the
    environment."""
    import json
    import subprocess

    root = Path(__file__).parents[1]
    python = root / SYNETUNE_VENVS[scheduler] / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no {SYNETUNE_VENVS[scheduler]} (make bench-synetune / bench-synetune013)")

    def search(out_dir: Path) -> list[dict[str, Any]]:
        out = subprocess.run([str(python), str(root / "benchmarks/tables/synetune_peer.py"), "--task",
                              table.folder.name, "--tables", str(table.folder.parent), "--schedulers", scheduler,
                              "--budgets", "3", "--seeds", "2", "--out", str(out_dir)], capture_output=True,
                             text=True, timeout=900, env={"SYNETUNE_FOLDER": str(out_dir / "st"),
                                                          "PATH": "/usr/bin:/bin"})
        assert out.returncode == 0, out.stderr[-2000:]
        cells = out_dir / "cells" / f"{table.folder.name}-3x-synetune_{scheduler}.json"
        rows: list[dict[str, Any]] = json.loads(cells.read_text())["rows"]
        return rows

    rows = search(tmp_path / "a")
    for r in rows:
        assert 0.95 <= r["spent"] <= 1.0, r
        assert r["selected"] in table.ids and 0.0 <= r["regret"] <= 1.0, r
    # a search seed is reproducible: Syne Tune 0.16's random searcher draws from numpy's global generator,
    # which `synetune_peer.seed_globals` seeds per search (before, two runs selected different configurations)
    again = search(tmp_path / "b")
    assert [(r["selected"], r["trials"], r["spent"]) for r in again] == [(r["selected"], r["trials"], r["spent"])
                                                                          for r in rows]


def test_the_recording_term_is_how_far_another_recording_would_move_the_paired_mean(table: Table) -> None:
    """``recording_se``: the worlds only resample the runs a table recorded, so a paired difference between two
    arms that select different configurations is uncertain by the training noise of those runs however many
    worlds are replayed. Re-record the table many times in simulation (each run's score moved by the table's
    seed-to-seed noise), keep the selections, and the spread of the paired mean is the term."""
    import random
    import statistics

    from tables.replay import recording_se

    ids = table.ids
    sigma = table.seed_spread()["top_third_sd"]
    rng = random.Random(7)
    worlds = range(100)
    a = [{"seed": w, "world": w, "selected": ids[w % 3]} for w in worlds]
    b = [{"seed": w, "world": w, "selected": rng.choice(ids[:6])} for w in worlds]
    assert recording_se(table, a, a) == 0  # the same runs: nothing another recording could move apart
    means = []
    for _ in range(4000):
        noise: dict[tuple[int, int], float] = {}

        def score(r: dict[str, int], noise: dict[tuple[int, int], float] = noise) -> float:
            key = (r["selected"], table.seed_in(r["selected"], r["world"]))
            return noise.setdefault(key, rng.gauss(0, sigma))

        means.append(sum(score(x) - score(y) for x, y in zip(a, b, strict=True)) / len(a))
    assert recording_se(table, a, b) == pytest.approx(statistics.pstdev(means), rel=0.08)
    # two arms that always select two different configurations: about sigma, however many worlds
    first = [dict(r, selected=ids[0]) for r in a]
    second = [dict(r, selected=ids[1]) for r in a]
    assert recording_se(table, first, second) == pytest.approx(sigma, rel=0.15)
