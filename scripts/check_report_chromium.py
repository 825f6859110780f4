#!/usr/bin/env python3
"""Open an lmtune report.html in real headless Chromium and check that it renders, offline, without errors.

Usage (Debian: ``apt-get install -y chromium``)::

    python scripts/check_report_chromium.py STUDY_DIR/report/report.html [--screenshot out.png]
    python scripts/check_report_chromium.py --fake-study /tmp/fake --screenshot docs/img/report.png

``--fake-study DIR`` first builds the fake study of ``tests/report/report_fake_study.py`` in DIR and
writes its report (needs ``src`` importable, e.g. ``PYTHONPATH=src``).

How it checks, with nothing but the Chromium binary (no driver, no extra Python packages):
1. A copy of the page gets a small probe script injected first in ``<head>``; it records uncaught
   errors, unhandled rejections, ``console.error`` calls and every resource URL the page fetched
   (``performance`` entries), and writes them as JSON into ``<pre id="lmtune-probe">``.
2. ``chromium --headless --dump-dom --virtual-time-budget=5000`` prints the DOM after scripts ran,
   with all host names mapped to nothing (``--host-resolver-rules``) so any network load would fail,
   and ``--enable-logging=stderr`` prints console messages, which are scanned for "Uncaught".
3. The page passes when every figure div (``id="fig-..."``) became a ``.js-plotly-plot`` with an SVG,
   the probe ran, recorded no error and no non-``file:`` resource, and stderr shows no uncaught error.
4. ``--screenshot`` renders the unmodified page at ``--window-size`` (default 1280,2400) to a PNG;
   ``--only SECTION`` (e.g. ``compute``) renders only that section (a copy that hides the others once
   plotly has drawn every figure).
Prints a JSON summary; exits 0 when the page passes, 1 when it does not, 2 when Chromium is missing.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from html import unescape
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
PROBE = """<script>(function () {
  var s = {errors: [], loaded: false, resources: []};
  function flush() {
    s.resources = performance.getEntriesByType('resource').map(function (e) { return e.name; });
    var el = document.getElementById('lmtune-probe');
    if (!el) { el = document.createElement('pre'); el.id = 'lmtune-probe'; el.style.display = 'none';
               (document.body || document.documentElement).appendChild(el); }
    el.textContent = JSON.stringify(s);
  }
  window.addEventListener('error', function (e) {
    var t = e.target && e.target !== window ? ' (resource ' + (e.target.src || e.target.href) + ')' : '';
    s.errors.push('error: ' + (e.message || '') + t + ' at ' + (e.filename || '') + ':' + (e.lineno || ''));
    flush();
  }, true);
  window.addEventListener('unhandledrejection', function (e) {
    s.errors.push('rejection: ' + e.reason); flush();
  });
  var ce = console.error;
  console.error = function () {
    s.errors.push('console.error: ' + Array.from(arguments).join(' ')); ce.apply(console, arguments);
  };
  window.addEventListener('load', function () { s.loaded = true; flush(); setTimeout(flush, 2000); });
})();</script>"""
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


def _chromium(binary: str, profile: Path, extra: list[str], url: str, timeout: float) -> tuple[str, str]:
    cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *extra, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout, proc.stderr


def _probe(dom: str) -> dict[str, Any] | None:
    match = re.search(r'<pre id="lmtune-probe"[^>]*>(.*?)</pre>', dom, re.S)
    if not match:
        return None
    return dict(json.loads(unescape(match.group(1))))


def check_report(
    page: Path,
    *,
    chromium: str = CHROMIUM,
    screenshot: Path | None = None,
    window_size: str = "1280,2400",
    budget_ms: int = 5000,
    timeout: float = 120,
    only: str | None = None,
) -> dict[str, Any]:
    """Run the checks on the report file ``page``; the returned dict has ``ok`` plus what was found."""
    source = page.read_text(encoding="utf-8")
    expected = sorted(set(re.findall(r'<div id="(fig-[\w-]+)"', source)))
    with tempfile.TemporaryDirectory(prefix="lmtune-chromium-") as tmp:
        probed = Path(tmp) / "probed.html"
        probed.write_text(source.replace("<head>", "<head>\n" + PROBE, 1), encoding="utf-8")
        logging = ["--enable-logging=stderr", "--v=0", f"--virtual-time-budget={budget_ms}", "--dump-dom"]
        dom, stderr = _chromium(chromium, Path(tmp) / "profile", logging, probed.as_uri(), timeout)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            shot = [
                f"--screenshot={screenshot.resolve()}",
                f"--window-size={window_size}",
                f"--virtual-time-budget={budget_ms}",
            ]
            target = page.resolve()
            if only is not None:  # the same page beside the original (its relative paths hold), others hidden
                target = page.resolve().with_name(f".only-{only}.html")
                target.write_text(source.replace("</head>", _hide_others(only) + "</head>", 1), encoding="utf-8")
            try:
                _chromium(chromium, Path(tmp) / "profile-shot", shot, target.as_uri(), timeout)
            finally:
                if only is not None:
                    target.unlink(missing_ok=True)
    result = _findings(expected, dom, stderr)
    return {"html": str(page), **result, "screenshot": str(screenshot) if screenshot is not None else None}


def _hide_others(section: str) -> str:
    """A script that hides every part of the page but ``section#<section>`` once the page has loaded and
    plotly has drawn. Hidden from the start (``display: none``), the other figures are drawn into boxes of
    no size, and plotly then misplaces the visible figure's axis titles and legend (they landed on top of
    its title in the first docs/img/report-compute.png)."""
    return (
        "<script>window.addEventListener('load', function () { setTimeout(function () {"
        f" document.querySelectorAll('body > *:not(section#{section})').forEach(function (e) {{"
        " e.style.display = 'none'; }); }, 1000); });</script>"
    )


def _findings(expected: list[str], dom: str, stderr: str) -> dict[str, Any]:
    """What the dumped DOM and Chromium's stderr show, and whether that passes (``ok``)."""
    rendered = sorted(
        fig for fig in expected if re.search(rf'<div id="{fig}" class="[^"]*js-plotly-plot[^"]*"', dom)
    )
    console = re.findall(r':CONSOLE[^\]]*\] "(.*)", source:', stderr)
    probe = _probe(dom) or {}
    network = [u for u in probe.get("resources", []) if not u.startswith(("file:", "data:", "blob:"))]
    result: dict[str, Any] = {
        "figures_expected": expected,
        "figures_rendered": rendered,
        "svg_count": dom.count('class="main-svg"'),
        "probe_ran": bool(probe.get("loaded")),
        "js_errors": probe.get("errors", []),
        "uncaught_in_console": [m for m in console if "Uncaught" in m],
        "console_messages": console,
        "network_requests": network,
    }
    result["ok"] = bool(
        expected
        and rendered == expected
        and result["probe_ran"]
        and not result["js_errors"]
        and not result["uncaught_in_console"]
        and not network
        and result["svg_count"] >= len(expected)
    )
    return result


def _fake_report(study_dir: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "report"))
    from report_fake_study import make_fake_study

    from lmtune.report.render import write_report

    if study_dir.exists():
        shutil.rmtree(study_dir)
    page, _ = write_report(make_fake_study(study_dir))
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("html", nargs="?", type=Path, help="report.html to check")
    parser.add_argument("--fake-study", type=Path, help="build the fake study here and check its report")
    parser.add_argument("--screenshot", type=Path)
    parser.add_argument("--window-size", default="1280,2400")
    parser.add_argument("--only", help="screenshot only this report section (its id, e.g. compute)")
    parser.add_argument("--chromium", default=CHROMIUM)
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists():
        print(f"no Chromium at {args.chromium}: apt-get install -y chromium", file=sys.stderr)
        return 2
    page = _fake_report(args.fake_study) if args.fake_study else args.html
    if page is None:
        parser.error("give a report.html or --fake-study DIR")
    result = check_report(
        page, chromium=args.chromium, screenshot=args.screenshot, window_size=args.window_size, only=args.only
    )
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
