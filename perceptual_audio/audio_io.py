"""Audio loading, saving and resampling.

Conventions: a waveform is a NumPy ``float32`` array of shape ``(n,)`` (mono) with nominal
range [-1, 1]; sample rates are integers in Hz. Reading goes through libsndfile
(``soundfile``), which handles WAV (8-bit unsigned to 32-bit float), FLAC, Ogg/Vorbis, Opus,
MP3 and AIFF. Resampling uses soxr at very high quality.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path

import numpy as np
import soundfile as sf

from perceptual_audio.errors import AudioFormatError, ParameterError
from perceptual_audio.files import TMP_MARKER, atomic_path

logger = logging.getLogger(__name__)

#: File extensions (lower case) that stage 1 picks up as audio.
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc"}
)

#: soxr quality used everywhere in the pipeline ("VHQ": very high quality, linear phase).
SOXR_QUALITY = "VHQ"


def find_audio_files(root: str | os.PathLike) -> list[Path]:
    """All audio files below ``root`` (recursive), sorted, skipping hidden and temporary files.

    Symbolic links are followed, to files and to folders, wherever they point; each file is
    listed under its path below ``root``. A folder link that leads back to a folder already
    being walked (a loop) is walked once. A broken link with an audio extension is listed, so
    that the stage reports it rather than skipping it silently.

    Raises
    ------
    ParameterError
        If ``root`` does not exist or is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise ParameterError(f"input folder {str(root)!r} does not exist or is not a folder")
    found = []
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a symlink loop, or two links to one folder
            logger.warning("%s: already searched as %s; not searched again", dirpath, real)
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or TMP_MARKER in name:
                continue
            p = Path(dirpath) / name
            if p.suffix.lower() in AUDIO_EXTENSIONS and (p.is_file() or p.is_symlink()):
                found.append(p)
    return sorted(found)


def audio_info(path: str | os.PathLike) -> sf._SoundFileInfo:
    """libsndfile's header information, with the same error handling as :func:`load_audio`."""
    _check_readable(Path(path))
    try:
        return sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioFormatError(_describe_read_error(Path(path), e)) from None


def load_audio(
    path: str | os.PathLike, *, sample_rate: int | None = None, mono: bool = True
) -> tuple[np.ndarray, int]:
    """Read an audio file as float32.

    Parameters
    ----------
    path : path-like
        Any format libsndfile reads.
    sample_rate : int or None
        Resample to this rate in Hz (soxr VHQ); None keeps the file's rate.
    mono : bool
        Mix channels down by their mean; when False the result is (n, channels).

    Returns
    -------
    y : np.ndarray [shape=(n,) or (n, channels), dtype=float32]
    sr : int
        Sample rate of ``y`` in Hz.

    Raises
    ------
    AudioFormatError
        Naming the file and the problem (empty, not audio, truncated, unreadable).
    """
    path = Path(path)
    _check_readable(path)
    try:
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioFormatError(_describe_read_error(path, e)) from None
    if y.shape[0] == 0:
        raise AudioFormatError(f"{path}: the file holds no audio samples (0 frames)")
    truncated = check_complete(path, frames_read=y.shape[0], sample_rate=sr)
    if truncated:
        raise AudioFormatError(truncated)
    if not np.all(np.isfinite(y)):
        raise AudioFormatError(f"{path}: the file holds NaN or infinite samples")
    if mono:
        y = to_mono(y)
    if sample_rate is not None and sample_rate != sr:
        y = resample(y, sr, sample_rate)
        sr = sample_rate
    return np.ascontiguousarray(y, dtype=np.float32), int(sr)


#: The one definition of "silent" (stage 1's ``silent`` flag, stage 2's "left unchanged"): the
#: AC peak (mean removed, so a DC offset alone is silent) at or below this level in dBFS.
SILENCE_DBFS = -80.0


def is_silent(x: np.ndarray) -> bool:
    """True when the AC peak of ``x`` is at or below :data:`SILENCE_DBFS` (empty: silent)."""
    x64 = np.asarray(x, dtype=np.float64)
    if x64.size == 0:
        return True
    return float(np.max(np.abs(x64 - x64.mean()))) <= 10 ** (SILENCE_DBFS / 20)


def to_mono(y: np.ndarray) -> np.ndarray:
    """Mean over channels of an (n, channels) array; a 1-D array is returned as is."""
    if y.ndim == 1:
        return y.astype(np.float32, copy=False)
    return y.mean(axis=1, dtype=np.float64).astype(np.float32)


def resampled_length(n_samples: int, sr_in: int, sr_out: int) -> int:
    """``round(n * sr_out / sr_in)``: the length a resampled signal must have."""
    return int(round(n_samples * sr_out / sr_in))


def resample(y: np.ndarray, sr_in: int, sr_out: int, *, quality: str = SOXR_QUALITY) -> np.ndarray:
    """Resample with soxr along axis 0; the output has exactly :func:`resampled_length` samples.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (n, channels)]
    sr_in, sr_out : int
        Input and output rates in Hz.
    quality : str
        soxr quality recipe (``"VHQ"``, ``"HQ"``, ...).
    """
    import soxr  # deferred: only a rate change needs the resampler

    if sr_in <= 0 or sr_out <= 0:
        raise ParameterError(f"sample rates must be positive, got sr_in={sr_in}, sr_out={sr_out}")
    if sr_in == sr_out:
        return np.asarray(y, dtype=np.float32)
    out = soxr.resample(np.asarray(y, dtype=np.float32), sr_in, sr_out, quality=quality)
    target = resampled_length(len(y), sr_in, sr_out)
    if len(out) > target:
        out = out[:target]
    elif len(out) < target:
        pad = [(0, target - len(out))] + [(0, 0)] * (out.ndim - 1)
        out = np.pad(out, pad)
    return np.ascontiguousarray(out, dtype=np.float32)


#: resampy 0.2.x's ``kaiser_best`` filter: 64 zero crossings, 2**9 table entries per crossing,
#: Kaiser window with beta 14.769656459379492, roll-off 0.9475937167399596 of Nyquist. It is the
#: filter openl3 0.4.2 (which pins resampy<0.3) and cdpam 0.0.6 (through librosa<0.10) resampled
#: with; resampy 0.3 replaced it (0.4.3's ``kaiser_best`` has 50 crossings, roll-off 0.917).
RESAMPY02_KAISER_BEST = {
    "num_zeros": 64,
    "precision": 9,
    "beta": 14.769656459379492,
    "rolloff": 0.9475937167399596,
}


def resample_resampy02(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample along the last axis exactly as resampy 0.2's ``kaiser_best`` did (float64).

    The reference models' parity mode: the installed resampy computes the interpolation, with
    the 0.2 filter rebuilt from :data:`RESAMPY02_KAISER_BEST`. The output has
    ``int(n * sr_out / sr_in)`` samples, as in resampy.

    Parameters
    ----------
    y : np.ndarray [shape=(..., n)]
    sr_in, sr_out : int
        Input and output rates in Hz.
    """
    import resampy  # deferred: numba-compiled, slow to import; only the models' front ends use it

    if sr_in <= 0 or sr_out <= 0:
        raise ParameterError(f"sample rates must be positive, got sr_in={sr_in}, sr_out={sr_out}")
    x = np.asarray(y, dtype=np.float64)
    if sr_in == sr_out:
        return x
    p = RESAMPY02_KAISER_BEST
    window = functools.partial(np.kaiser, beta=p["beta"])
    return resampy.resample(
        x,
        sr_in,
        sr_out,
        axis=-1,
        filter="sinc_window",
        num_zeros=p["num_zeros"],
        precision=p["precision"],
        window=window,
        rolloff=p["rolloff"],
    )


def save_wav(path: str | os.PathLike, y: np.ndarray, sample_rate: int) -> None:
    """Write a mono float32 WAV atomically (temporary file + rename).

    32-bit float keeps peaks above full scale (no silent clipping). Written by SciPy rather
    than libsndfile so that the bytes are deterministic (libsndfile adds a PEAK chunk with a
    timestamp to float WAVs): the same samples always give the same file and sha256.
    """
    from scipy.io import wavfile  # deferred: scipy is slow to import; only writing needs it

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ParameterError(f"save_wav({path}): expected a mono (n,) array, got shape {y.shape}")
    with atomic_path(path) as tmp:
        wavfile.write(tmp, int(sample_rate), y)


#: Consecutive samples at full scale that mark an input as clipped (one sample at full
#: scale is a peak-normalised recording; a run of them is a flattened waveform top).
CLIP_RUN_SAMPLES = 3
_PCM_BITS = {"PCM_U8": 8, "PCM_S8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}


def full_scale_run(path: str | os.PathLike) -> int:
    """Longest run of consecutive samples at full scale in any channel of the file as stored.

    Full scale is the format's largest code: ``(2**(bits-1) - 1) / 2**(bits-1)`` (or -1) for
    integer PCM, 1.0 for float and compressed formats.
    """
    info = sf.info(str(path))
    bits = _PCM_BITS.get(info.subtype)
    y, _ = sf.read(str(path), dtype="float64", always_2d=True)
    full = (2 ** (bits - 1) - 1) / 2 ** (bits - 1) if bits else 1.0
    at_full = np.abs(y) >= full - 1e-12
    longest = 0
    for ch in at_full.T:
        if not ch.any():
            continue
        # lengths of the runs of True
        edges = np.diff(np.concatenate([[0], ch.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        longest = max(longest, int((ends - starts).max()))
    return longest


#: Bytes of an Ogg page header before its segment table (RFC 3533 section 6).
_OGG_HEADER_BYTES = 27
#: Ogg header_type flag of a logical stream's last page (end of stream).
_OGG_EOS = 0x04
#: libsndfile's header dump says ``data : 96000 (should be 47978)`` when a WAV/AIFF data
#: chunk promises more bytes than the file holds (it then reads what is there, silently).
_CHUNK_SHORT = re.compile(r"^\s*(data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def check_complete(path: str | os.PathLike, *, frames_read: int, sample_rate: int) -> str | None:
    """Why a readable file is truncated (a message), or None when it is complete.

    libsndfile decodes a truncated WAV/AIFF (its header promises more samples than the file
    holds) and a truncated Ogg (Vorbis/Opus/FLAC; no end-of-stream page, or a cut page) without
    an error, giving a shorter signal. A truncated FLAC or MP3 fails to decode instead (or is
    not detectable for MP3, which has no length in its header).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".wav", ".wave", ".aiff", ".aif", ".aifc"):
        try:
            extra = sf.info(str(path)).extra_info
        except (sf.LibsndfileError, RuntimeError):
            return None
        m = _CHUNK_SHORT.search(extra)
        if m:
            promised, held = int(m.group(2)), int(m.group(3))
            seconds = frames_read / sample_rate
            promised_s = seconds * promised / held if held else float("nan")
            return (
                f"{path}: truncated: its header promises {promised} bytes of audio "
                f"({promised_s:.3f} s) but the file holds {held} ({seconds:.3f} s); "
                "copy or export the file again"
            )
        return None
    if suffix in (".ogg", ".oga", ".opus"):
        problem = _ogg_truncation(path)
        if problem:
            seconds = frames_read / sample_rate
            return (
                f"{path}: truncated: {problem} (only {seconds:.3f} s decodable); copy or "
                "export the file again"
            )
    return None


def _ogg_truncation(path: Path) -> str | None:
    """Walk the Ogg pages: a cut page or a last page without end-of-stream is truncation."""
    size = path.stat().st_size
    pos = 0
    last_flags = None
    with open(path, "rb") as f:
        while pos < size:
            f.seek(pos)
            head = f.read(_OGG_HEADER_BYTES)
            if len(head) < _OGG_HEADER_BYTES or head[:4] != b"OggS":
                return f"the Ogg page at byte {pos} is cut off or damaged"
            n_segments = head[26]
            table = f.read(n_segments)
            if len(table) < n_segments:
                return f"the Ogg page at byte {pos} is cut off"
            end = pos + _OGG_HEADER_BYTES + n_segments + sum(table)
            if end > size:
                return f"the Ogg page at byte {pos} is cut off ({end - size} bytes missing)"
            last_flags = head[5]
            pos = end
    if last_flags is None or not last_flags & _OGG_EOS:
        return "the stream has no end-of-stream page"
    return None


def _check_readable(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        raise AudioFormatError(
            f"{path}: a symbolic link to {os.readlink(path)}, which does not exist"
        )
    if not path.exists():
        raise AudioFormatError(f"{path}: no such file")
    if not path.is_file():
        raise AudioFormatError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise AudioFormatError(f"{path}: permission denied (the file is not readable)")
    if path.stat().st_size == 0:
        raise AudioFormatError(f"{path}: the file is empty (0 bytes)")


def _describe_read_error(path: Path, err: Exception) -> str:
    msg = str(err)
    low = msg.lower()
    if "format not recognised" in low or "unknown format" in low or "not recognised" in low:
        return (
            f"{path}: not a recognised audio file (libsndfile: {msg.split(': ')[-1]}); "
            "is it really a {ext} file?".format(ext=path.suffix.lstrip(".").upper() or "audio")
        )
    if "permission" in low:
        return f"{path}: permission denied ({msg})"
    return (
        f"{path}: cannot decode the audio, the file may be truncated or corrupt (libsndfile: {msg})"
    )
