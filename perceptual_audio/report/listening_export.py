"""Export the restorations as a ready-to-run webMUSHRA test (ITU-R BS.1534 MUSHRA).

``visualize_results.py --export-listening-test DIR`` writes, for every restored recording
(one trial per clean file, family and level that has restorations):

- ``DIR/configs/resources/audio/<trial>/``: ``reference.wav`` (the clean file),
  ``anchor35.wav`` (the clean file low-passed at 3.5 kHz: BS.1534's low anchor),
  ``degraded.wav`` and one ``<loss>.wav`` per restoration (16-bit PCM, the study's rate,
  same length);
- ``DIR/configs/<test id>.yaml``: webMUSHRA's configuration (audiolabs/webMUSHRA
  ``configs/*.yaml``: ``testname``, ``testId``, ``bufferSize``, ``stopOnErrors``,
  ``remoteService``, ``pages`` with one ``type: mushra`` page per trial holding ``reference``
  and ``stimuli``; the hidden reference is added by webMUSHRA itself), a finish page that asks
  each listener for an id;
- ``DIR/stimuli.csv``: per trial and stimulus the study's manifest path, for
  ``scripts/mushra_to_long.py --webmushra`` to turn webMUSHRA's ``results/<test id>/mushra.csv``
  into the long ratings format that ``calculate_metrics.py --ratings`` reads.

Copy ``DIR/configs`` into a webMUSHRA checkout and open ``?config=<test id>.yaml``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd

from perceptual_audio.audio_io import load_audio
from perceptual_audio.files import atomic_path, atomic_write_text

#: webMUSHRA's test id (the results folder ``results/<id>/`` and the config file name).
TEST_ID = "loss_audit"
#: Cut-off of the low anchor, Hz (ITU-R BS.1534-3: 3.5 kHz low-pass).
ANCHOR_CUTOFF_HZ = 3500.0
#: Butterworth order of the anchor's low-pass (applied forwards and backwards).
ANCHOR_ORDER = 8
#: Stimulus keys: the clean file (webMUSHRA's ``reference``, rated as the hidden reference
#: under the name ``reference``), the anchor, the degraded file; each loss under its name.
REFERENCE, ANCHOR, DEGRADED = "reference", "anchor35", "degraded"
STIMULI_NAME = "stimuli.csv"
STIMULI_COLUMNS = ("trial_id", "stimulus", "reference", "path", "condition")
AUDIO_SUBDIR = "configs/resources/audio"


def low_pass_anchor(y: np.ndarray, sample_rate: int) -> np.ndarray:
    """The 3.5 kHz low-pass anchor of ``y`` (zero phase)."""
    from scipy.signal import butter, sosfiltfilt  # deferred: scipy.signal is slow to import

    if sample_rate / 2 <= ANCHOR_CUTOFF_HZ:
        return y.copy()
    sos = butter(ANCHOR_ORDER, ANCHOR_CUTOFF_HZ, btype="low", fs=sample_rate, output="sos")
    return sosfiltfilt(sos, y).astype(np.float32)


def trials(pairs: pd.DataFrame) -> list[dict]:
    """One trial per (clean file, family, level) with restorations: its stimuli in order."""
    restored = pairs[pairs["kind"] == "restored"]
    degraded = pairs[pairs["kind"] == "degraded"].set_index(["reference_path", "family", "level"])
    out = []
    keys = ["reference_path", "family", "level"]
    for i, ((ref, fam, lev), g) in enumerate(restored.groupby(keys, sort=True), start=1):
        if (ref, fam, lev) not in degraded.index:
            continue
        deg_path = degraded.loc[(ref, fam, lev), "degraded_path"]
        deg_path = deg_path if isinstance(deg_path, str) else str(deg_path.iloc[0])
        stimuli = [(DEGRADED, deg_path, f"{fam}/{lev}")]
        stimuli += [(str(loss), str(p), f"{loss}/{fam}/{lev}")
                    for loss, p in zip(g["loss"], g["degraded_path"], strict=True)]  # fmt: skip
        out.append({"id": f"trial{i:03d}", "reference": ref, "family": fam, "level": lev,
                    "stimuli": stimuli})  # fmt: skip
    return out


def _q(text: str) -> str:
    """A YAML double-quoted scalar."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_yaml(test_trials: list[dict]) -> str:
    """webMUSHRA's YAML configuration of the trials."""
    lines = [
        "# webMUSHRA test of the loss audit's restorations (written by visualize_results.py)",
        f"testname: {_q('Loss audit: restorations under each loss')}",
        f"testId: {TEST_ID}",
        "bufferSize: 2048",
        "stopOnErrors: true",
        "showButtonPreviousPage: true",
        "remoteService: service/write.php",
        "",
        "pages:",
        "    - type: generic",
        "      id: intro",
        f"      name: {_q('Instructions')}",
        "      content: "
        + _q(
            "Rate each stimulus against the reference (0-100). One of them "
            "is the hidden reference; rate it 100."
        ),  # fmt: skip
    ]
    for t in test_trials:
        base = f"{AUDIO_SUBDIR}/{t['id']}"
        lines += [
            "    - type: mushra",
            f"      id: {t['id']}",
            f"      name: {_q(t['id'])}",
            f"      content: {_q('Rate the basic audio quality against the reference.')}",
            "      showWaveform: true",
            "      enableLooping: true",
            f"      reference: {base}/{REFERENCE}.wav",
            "      createAnchor35: false",
            "      createAnchor70: false",
            "      stimuli:",
            f"          {ANCHOR}: {base}/{ANCHOR}.wav",
        ]
        lines += [f"          {key}: {base}/{key}.wav" for key, _, _ in t["stimuli"]]
    lines += [
        "    - type: finish",
        f"      name: {_q('Thank you')}",
        f"      content: {_q('Thank you for taking part.')}",
        "      showResults: false",
        "      writeResults: true",
        "      questionnaire:",
        "          - type: text",
        f"            label: {_q('Listener id')}",
        "            name: listener",
        "",
    ]
    return "\n".join(lines)


def export_listening_test(pairs: pd.DataFrame, audio_dir: Path, out_dir: Path) -> int:
    """Write the test to ``out_dir``; returns the number of trials."""
    import soundfile as sf  # deferred: only an export writes audio

    test_trials = trials(pairs)
    rows = []
    for t in test_trials:
        folder = Path(out_dir) / AUDIO_SUBDIR / t["id"]
        folder.mkdir(parents=True, exist_ok=True)
        ref, sr = load_audio(Path(audio_dir) / t["reference"], mono=True)
        signals = [(REFERENCE, ref, t["reference"], "reference"),
                   (ANCHOR, low_pass_anchor(ref, sr), "", "anchor35")]  # fmt: skip
        for key, path, condition in t["stimuli"]:
            y, _ = load_audio(Path(audio_dir) / path, sample_rate=sr, mono=True)
            signals.append((key, y[: len(ref)], path, condition))
        for key, y, path, condition in signals:
            with atomic_path(folder / f"{key}.wav") as tmp:
                sf.write(tmp, np.clip(y, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")
            rows.append([t["id"], key, t["reference"], path, condition])
    atomic_write_text(Path(out_dir) / "configs" / f"{TEST_ID}.yaml", config_yaml(test_trials))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(STIMULI_COLUMNS)
    writer.writerows(rows)
    atomic_write_text(Path(out_dir) / STIMULI_NAME, buf.getvalue())
    return len(test_trials)
