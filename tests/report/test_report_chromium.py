"""The fake study's report.html in real headless Chromium: plots render, no JS errors, no network.

Marked ``integration``; skipped where ``/usr/bin/chromium`` is absent (Debian: ``apt-get install -y
chromium``). The checker itself is ``scripts/check_report_chromium.py``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from report_fake_study import make_fake_study

from lmtune.report.render import write_report

CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_report_chromium.py"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)"),
]


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_report_chromium", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_report_renders_in_chromium(tmp_path: Path) -> None:
    html, _ = write_report(make_fake_study(tmp_path / "run"))
    shot = tmp_path / "report.png"
    result = _checker().check_report(html, screenshot=shot)
    assert result["figures_rendered"] == result["figures_expected"]
    assert len(result["figures_expected"]) == 9  # the gain picture (default vs optimized) among them
    assert result["probe_ran"] and result["js_errors"] == [] and result["uncaught_in_console"] == []
    assert result["network_requests"] == []
    assert result["ok"]
    assert shot.stat().st_size > 10_000


def test_checker_catches_errors_and_network_loads(tmp_path: Path) -> None:
    html, _ = write_report(make_fake_study(tmp_path / "run", proxy=False, pbt=False, final=False))
    broken = tmp_path / "broken.html"
    bad = '<script>noSuchFunction();</script><script src="http://example.invalid/x.js"></script>'
    broken.write_text(html.read_text(encoding="utf-8").replace("</body>", bad + "</body>"), encoding="utf-8")
    result = _checker().check_report(broken)
    assert not result["ok"]
    assert any("noSuchFunction" in e for e in result["js_errors"])
    assert any("noSuchFunction" in m for m in result["uncaught_in_console"])
    assert any("example.invalid" in e for e in result["js_errors"])  # the blocked script load


def test_one_section_alone_is_drawn_as_in_the_whole_page(tmp_path: Path) -> None:
    """``--only compute`` (docs/img/report-compute.png): the other sections are hidden after plotly drew, so
    the figure keeps its axis titles below the plot and inside it (drawn with the others already hidden, the
    x titles landed on the figure's title and the y title off the canvas)."""
    import re

    checker = _checker()
    html, _ = write_report(make_fake_study(tmp_path / "run"))
    only = html.with_name("only.html")
    only.write_text(html.read_text(encoding="utf-8").replace("</head>", checker._hide_others("compute") + "</head>",
                                                             1), encoding="utf-8")
    dom, _ = checker._chromium(checker.CHROMIUM, tmp_path / "profile", ["--dump-dom", "--virtual-time-budget=5000"],
                               only.as_uri(), 120)
    figure = dom[dom.index('id="fig-compute"'):]

    def attr(cls: str, name: str) -> float:
        found = re.search(rf'<text class="{cls}"[^>]*\b{name}="([-\d.]+)"', figure)
        assert found is not None, cls
        return float(found.group(1))

    assert 'style="display: none;"' in dom  # the other sections were hidden
    for title in ("xtitle", "x2title"):
        assert attr(title, "y") > attr("gtitle", "y") + 300  # below the plot (figure height 440), not on its title
    assert attr("ytitle", "x") > 0
