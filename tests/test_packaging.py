"""The package installs with pip (regular and editable) and works outside the checkout.

Installs run with ``--no-deps --no-build-isolation`` into temporary folders, from a copy of the
package (the checkout stays clean): the dependencies are the test environment's own, so
nothing is downloaded and no second torch is installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from email.parser import Parser
from pathlib import Path

import pytest
from conftest import REPO_ROOT

#: A training step with the perceptual loss, as a user's script outside the checkout writes it.
SCRIPT = textwrap.dedent("""
    import sys
    {setup}
    import torch
    import perceptual_audio
    from perceptual_audio.embeddings import get_embedder, model_names
    from perceptual_audio.loss import EmbeddingLoss

    assert model_names() == ["openl3", "vggish", "cdpam"], model_names()
    assert get_embedder("cdpam").name == "cdpam"
    loss_fn = EmbeddingLoss("cdpam", sample_rate=16000)
    t = torch.arange(8000) / 16000
    clean = 0.3 * torch.sin(2 * torch.pi * 440 * t)[None]
    estimate = (clean + 0.05 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(0)))
    estimate.requires_grad_(True)
    loss = loss_fn(estimate, clean)
    loss.backward()
    assert loss.item() > 0 and estimate.grad.abs().sum().item() > 0
    print(perceptual_audio.__file__)
""")


def _source_copy(root: Path) -> Path:
    src = root / "src"
    shutil.copytree(
        REPO_ROOT / "perceptual_audio",
        src / "perceptual_audio",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, src / name)
    for name in ("bench", "original_audio", "tests"):  # what setuptools must not pick up
        (src / name).mkdir()
        (src / name / "x.py").write_text("")
    return src


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", *args],
        check=True,
        capture_output=True,
        timeout=300,
    )


def _run_outside(root: Path, setup: str) -> str:
    outside = root / "elsewhere"
    outside.mkdir()
    script = outside / "train.py"
    script.write_text(SCRIPT.format(setup=setup))
    out = subprocess.run(
        [sys.executable, "-s", str(script)],
        cwd=outside,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(root)},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.slow
def test_pip_install_installs_only_the_package_and_a_script_elsewhere_uses_the_loss(tmp_path):
    src = _source_copy(tmp_path)
    site = tmp_path / "site"
    _pip("--target", str(site), str(src))
    assert sorted(p.name for p in site.iterdir()) == [
        "perceptual_audio",
        "perceptual_audio-0.1.0.dist-info",
    ]
    meta = Parser().parsestr((site / "perceptual_audio-0.1.0.dist-info" / "METADATA").read_text())
    requires = meta.get_all("Requires-Dist")
    assert 'torch==2.13.0; extra == "torch"' in requires  # only as the opt-in extra
    assert not [r for r in requires if r.startswith("torch") and "extra" not in r]
    where = _run_outside(tmp_path, f"sys.path.insert(0, {str(site)!r})")
    assert where == str(site / "perceptual_audio" / "__init__.py")


@pytest.mark.slow
def test_editable_install_points_at_the_source(tmp_path):
    src = _source_copy(tmp_path)
    prefix = tmp_path / "prefix"
    _pip("--prefix", str(prefix), "-e", str(src))
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    setup = f"import site; site.addsitedir({str(site / 'site-packages')!r})"
    assert _run_outside(tmp_path, setup) == str(src / "perceptual_audio" / "__init__.py")
