"""report.html as people see it: rendered by headless Chromium.

A small study (speech and music, two noise levels, CDPAM) goes through the four real stage
scripts; the report is then loaded in Debian's ``chromium`` (``.ci/run`` installs it; the test
skips with the reason where it is absent). Checked: the page loads without a console message or
uncaught error, every audio player has a source that decodes (the embedded MP3 data URIs are
decoded with soundfile), the document never scrolls sideways at 1280 or 800 px wide and its
first screen holds the whole At-a-glance table. One screenshot per report section (and of the
first screen at both widths) is kept in the test's temporary folder (``screenshots/``) for a
person to look at; the path is printed.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO_ROOT, sine, write_audio
from test_end_to_end import _script, _speechlike

#: Left out of ``make test-fast``: a full run and headless Chromium.
pytestmark = pytest.mark.slow

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium is not installed (apt-get install chromium; .ci/run does this)")


def _browser(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--mute-audio",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """Stages 1-4 on two 2 s clips (speech/ and music/), noise low and extreme, CDPAM, and
    the l1 and sisdr restorations of noise:extreme (the loss audit)."""
    chromium()  # skip before spending the CPU when there is no browser
    work = tmp_path_factory.mktemp("browser")
    rng = np.random.default_rng(3)
    write_audio(
        work / "original_audio" / "speech" / "talker.wav", _speechlike(2.0, 140, rng), 22050
    )
    chord = sum(sine(f, 2.0, 44100, amplitude=0.15) for f in (262, 330, 392))
    write_audio(work / "original_audio" / "music" / "chord.flac", chord, 44100)
    env = dict(
        os.environ,
        PERCEPTUAL_AUDIO_CACHE=str(work / "cache"),
        PERCEPTUAL_AUDIO_OFFLINE="1",
        PYTHONPATH=str(REPO_ROOT),
    )
    steps = [
        ("audio_conversion.py", "--input", "original_audio", "--output", "test_audio"),
        (
            "extract_embeddings.py",
            "--input-dir",
            "test_audio",
            "--degradations",
            "noise:low,noise:extreme,bitrate:extreme",
            "--models",
            "cdpam",
            "--restore",
            "l1,sisdr",
            "--restore-on",
            "noise:extreme",
            "--restore-steps",
            "5",
        ),
        (
            "calculate_metrics.py",
            "--audio-dir",
            "test_audio",
            "--results-dir",
            "results",
            "--models",
            "cdpam",
            "--bootstrap",
            "100",
        ),
        ("visualize_results.py", "--results-dir", "results", "--dpi", "60"),
    ]
    for name, *args in steps:
        res = _script(name, *args, env=env, cwd=work)
        assert res.returncode == 0, f"{name} exited {res.returncode}:\n{res.stderr[-3000:]}"
        assert re.search(rf"{name[:-3]}: finished in \S+", res.stderr), res.stderr[-2000:]
    return work / "results" / "visualizations" / "report.html"


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.audio: list[str] = []
        self.sections: list[str] = []
        self.attrs_body: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "audio":
            self.audio.append(a.get("src") or "")
        elif tag == "section":
            self.sections.append(a.get("id") or "")
        elif tag == "body":
            self.attrs_body = {k: v or "" for k, v in a.items()}


def _console_problems(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if ":CONSOLE" in line or "Uncaught" in line or "Failed to load resource" in line
    ]


def test_page_loads_without_errors_and_every_player_decodes(study):
    res = _browser("--dump-dom", study.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert not _console_problems(res.stderr), _console_problems(res.stderr)
    page = _Page()
    page.feed(res.stdout)
    assert page.sections[0] == "at-a-glance" and "key-findings" in page.sections
    assert "listen" in page.sections
    assert "by-content-type" in page.sections
    assert "loss-audit" in page.sections  # stage 2 --restore: the loss audit's section
    assert len(page.audio) >= 2 and len(page.audio) % 2 == 0  # clean beside degraded
    for src in page.audio:
        assert src.startswith("data:audio/mpeg;base64,"), src[:60]
        y, sr = sf.read(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert sr == 16000 and 1.0 <= len(y) / sr <= 5.1
        assert np.all(np.isfinite(y)) and np.max(np.abs(y)) > 1e-3
    html = study.read_text()
    assert "encoded as MP3" in html
    assert "http://" not in html.replace("http://www.w3.org", "")


#: Widths the page must fit without scrolling sideways (a laptop and a narrow window), with
#: the height of their first screen.
SCREENS = ((1280, 800), (800, 800))

_PROBE = """<script>window.addEventListener('load',function(){
  var d=document.documentElement,t=document.querySelector('#at-a-glance table');
  var r=t?t.getBoundingClientRect():null,wide=[];
  document.querySelectorAll('body *').forEach(function(e){
    var b=e.getBoundingClientRect();
    if(b.width>0&&b.right>d.clientWidth+1&&!e.closest('.wide')&&!e.closest('details:not([open])'))
      wide.push(e.tagName+(e.id?'#'+e.id:'')+(e.className?'.'+e.className:'')+' '+
        Math.round(b.right));});
  var ok=r&&r.top>=0&&r.bottom<=window.innerHeight;
  document.body.setAttribute('data-probe',JSON.stringify({
    scroll:d.scrollWidth,client:d.clientWidth,inner:window.innerWidth,
    glance:ok?'yes':'no '+(r?Math.round(r.top)+'-'+Math.round(r.bottom):'none')+
      ' of '+window.innerHeight,wide:wide.slice(0,8)}));});</script>"""


@pytest.mark.parametrize("width, height", SCREENS)
def test_page_fits_the_width_and_leads_with_at_a_glance(study, tmp_path, width, height):
    """No horizontal scrolling of the document at either width (wide tables scroll inside
    their own box), and the At-a-glance table is whole on the first screen."""
    import json

    probe = tmp_path / "probe.html"
    probe.write_text(study.read_text().replace("</body>", _PROBE + "</body>"))
    res = _browser(f"--window-size={width},{height}", "--dump-dom", probe.as_uri())
    page = _Page()
    page.feed(res.stdout)
    got = json.loads(page.attrs_body.get("data-probe", "{}") or "{}")
    assert got, res.stderr[-2000:]
    assert got["inner"] == width, got  # the viewport is the width asked for
    assert got["scroll"] <= got["client"], got  # the document never scrolls sideways
    assert got["wide"] == [], got  # no element sticks out of the page (outside .wide boxes)
    assert got["glance"] == "yes", got
    assert page.sections[0] == "at-a-glance"


def test_one_screenshot_per_section(study, tmp_path_factory):
    folder = tmp_path_factory.mktemp("screenshots")
    page = _Page()
    page.feed(study.read_text())
    assert page.sections
    shots = []
    for width, height in SCREENS:
        first = folder / f"00-first-screen-{width}.png"
        _browser(f"--window-size={width},{height}", f"--screenshot={first}", study.as_uri())
        shots.append(first)
    for i, sid in enumerate(page.sections, 1):
        only = folder / f"{i:02d}-{sid}.html"
        hide = f"<style>nav,h1,.meta,section:not(#{sid}){{display:none}}</style>"
        only.write_text(study.read_text().replace("</head>", hide + "</head>"))
        png = folder / f"{i:02d}-{sid}.png"
        _browser("--window-size=1280,1600", f"--screenshot={png}", only.as_uri())
        only.unlink()
        shots.append(png)
    print(f"screenshots of {study}: {folder}")
    for png in shots:
        assert png.is_file() and png.read_bytes().startswith(b"\x89PNG"), png
        assert png.stat().st_size > 5000  # not a blank page
