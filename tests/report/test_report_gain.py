"""The gain as a picture, axes that fit the data, and a report whose size grows no faster than the study's
data (issue 35, items 2, 3 and 5)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import optuna
import plotly.graph_objects as go
import pytest
from report_fake_study import STUDY_NAME, make_fake_study

from lmtune.report.axes import metric_range
from lmtune.report.content import collect
from lmtune.report.figures import build_figures
from lmtune.report.load import load_study_dir
from lmtune.report.render import size_note, write_report


def test_metric_range_fits_the_data_and_keeps_shares_in_0_1() -> None:
    assert metric_range("eval_accuracy", [0.62, 0.88]) == pytest.approx([0.6044, 0.8956])
    assert metric_range("test_f1", [0.0, 1.0]) == [0.0, 1.0]  # padded, then clipped to the share's bounds
    assert metric_range("eval_loss", [2.0, 3.0]) == pytest.approx([1.94, 3.06])  # loss: from its data only
    assert metric_range("eval_loss", [2.5, None, float("nan")]) == pytest.approx([2.485, 2.515])
    assert metric_range("eval_accuracy", []) is None


def _axes(fig: go.Figure, letter: str) -> list[list[float]]:
    layout = fig.to_plotly_json()["layout"]
    return [list(v["range"]) for k, v in layout.items() if k.startswith(f"{letter}axis") and "range" in v]


def test_every_metric_axis_spans_its_data(tmp_path: Path) -> None:
    record = load_study_dir(make_fake_study(tmp_path / "run"))
    content = collect(record)
    figs = build_figures(record.study, content)
    values = [t.value for t in record.trials if t.value is not None]
    (history,) = _axes(figs["history"], "y")
    assert 0.0 <= history[0] <= min(values) and max(values) <= history[1] <= 1.0
    assert history[1] - history[0] < 1.5 * (max(values) - min(values))  # not 0 to 1.5
    (curves,) = _axes(figs["curves"], "y")
    assert curves[0] >= 0.0 and curves[1] <= 1.0
    assert _axes(figs["compute"], "y") and all(lo >= 0.0 and hi <= 1.0 for lo, hi in _axes(figs["compute"], "y"))
    objective = [float(a.text) for a in figs["parallel"].layout.annotations if a.x == 0]  # Optuna's own scaling
    assert min(objective) == pytest.approx(min(values), abs=1e-3) and max(objective) == pytest.approx(max(values),
                                                                                                         abs=1e-3)
    gain = _axes(figs["gain"], "y")  # accuracy, f1, loss: each on its own data's range
    assert len(gain) == 3 and all(0.0 <= lo < hi <= 1.0 for lo, hi in gain[:2])
    loss_lo, loss_hi = gain[2]
    assert 0.2 < loss_lo < 0.39 and 0.41 < loss_hi < 0.6  # test_loss 0.34 … 0.40 with its intervals


def test_gain_picture_tops_the_report_in_both_files(tmp_path: Path) -> None:
    html_path, md_path = write_report(make_fake_study(tmp_path / "run"))
    md = md_path.read_text(encoding="utf-8")
    assert md.index("![Default vs optimized (held-out test set)](gain.svg)") < md.index("## Best configuration")
    svg = ET.fromstring((md_path.parent / "gain.svg").read_text(encoding="utf-8"))
    ns = "{http://www.w3.org/2000/svg}"
    assert len(svg.findall(f"{ns}circle")) == 3 * 2 * 3  # 3 metrics × 2 sides × 3 seeds, one point each
    texts = " ".join(t.text or "" for t in svg.iter(f"{ns}text"))
    assert "test_accuracy ↑ +0.0500" in texts and "better, significant" in texts
    assert "compute — default: 3 runs · 123k tokens · 50 s" in texts
    assert "optimized: 3 runs · 123k tokens · 50 s + search: 10 trials" in texts
    html = html_path.read_text(encoding="utf-8")
    assert html.index('id="fig-gain"') < html.index('id="best"')  # the picture above the configuration


def test_no_gain_picture_before_final(tmp_path: Path) -> None:
    _, md_path = write_report(make_fake_study(tmp_path / "run", final=False))
    assert "gain.svg" not in md_path.read_text(encoding="utf-8")
    assert not (md_path.parent / "gain.svg").exists()


def _grown(tmp: Path, extra: int) -> tuple[int, int]:
    """The fake study plus ``extra`` copies of its complete trials: (report.html bytes, bytes of the trials'
    own data: their attrs and params as JSON)."""
    study_dir = make_fake_study(tmp, proxy=False, pbt=False)
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{study_dir.resolve()}/study.db")
    base = [t for t in study.trials if t.state.name == "COMPLETE" and not t.user_attrs["is_default"]]
    data = 0
    for i in range(extra):
        t = base[i % len(base)]
        study.add_trial(optuna.create_trial(value=t.value, params=t.params, distributions=t.distributions,
                                            user_attrs=t.user_attrs, intermediate_values=t.intermediate_values))
        data += len(json.dumps(t.user_attrs)) + len(json.dumps(t.params))
    html, _ = write_report(study_dir)
    return html.stat().st_size, data


@pytest.mark.slow
def test_report_size_grows_no_faster_than_the_data(tmp_path: Path) -> None:
    (s0, _), (s1, d1), (s2, d2) = (_grown(tmp_path / str(n), n) for n in (0, 60, 120))
    assert s1 - s0 <= d1 and s2 - s1 <= d2 - d1  # each added trial adds fewer bytes than its own data
    assert abs((s2 - s1) - (s1 - s0)) < 0.05 * (s1 - s0)  # linear: the second 60 trials cost the first's
    note = size_note(tmp_path / "0" / "report" / "report.html")
    assert note.startswith(f"{s0 / 2**20:.1f} MiB") and "plotly.js" in note
