"""Pretrained weights: a registry of official files, lookup, download, verification, conversion.

Lookup order for a :class:`WeightFile` (first hit wins):

1. ``--weights-dir DIR`` (``weights_dir=``): ``DIR/<filename>`` or ``DIR/<model>/<filename>``;
2. the cache, ``$PERCEPTUAL_AUDIO_CACHE`` (default ``~/.cache/perceptual_audio``):
   ``<cache>/<model>/<filename>``;
3. download from each of the file's URLs into the cache (``urllib``; ``file://`` URLs work,
   which is how the tests exercise this path), written to a temporary file and renamed into
   place only once complete and verified.

A sha256 is checked whenever the registry knows it (in full, or as a filename prefix in the
torch-hub convention), and the sha256 of the file actually used is always returned so that
output manifests can record it. Without network and without the file, a
:class:`~perceptual_audio.errors.WeightsUnavailableError` names the model, every URL and the
exact path(s) to put each file in.

Conversion (``load_converted``): a model module supplies a converter ``Path -> state dict``
(for instance Keras HDF5 -> torch). The result is saved once next to the cached source as
``<filename>.<tag>-<sha256[:16]>.pt`` (atomically) and later loaded with
``torch.load(weights_only=True)``; a changed source file or converter ``tag`` converts again.

Set ``PERCEPTUAL_AUDIO_OFFLINE=1`` to never attempt a download.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from perceptual_audio.errors import (
    ParameterError,
    WeightsUnavailableError,
    WeightsVerificationError,
)
from perceptual_audio.files import atomic_path, sha256_file

logger = logging.getLogger(__name__)

#: Environment variable naming the cache folder.
CACHE_ENV = "PERCEPTUAL_AUDIO_CACHE"
#: Environment variable that, when set to a true value (1, yes, true), disables downloads.
OFFLINE_ENV = "PERCEPTUAL_AUDIO_OFFLINE"
#: Cache folder used when :data:`CACHE_ENV` is unset.
DEFAULT_CACHE_DIR = Path("~/.cache/perceptual_audio")
#: Seconds to wait for a server before giving up on a URL.
DOWNLOAD_TIMEOUT_SECONDS = 30.0
_CHUNK_BYTES = 1 << 20

#: ``progress(bytes_done, bytes_total_or_None)`` called while downloading.
ProgressCallback = Callable[[int, "int | None"], None]
#: A converter reads a source file and returns a torch state dict.
Converter = Callable[[Path], "dict[str, torch.Tensor]"]


@dataclass(frozen=True)
class WeightFile:
    """One pretrained-weights file as published by its authors.

    Attributes
    ----------
    model : str
        Model name (registry key of the embedder, e.g. ``"openl3"``); also the cache subfolder.
    filename : str
        File name, identical to the last part of the official URL.
    url : str
        Official download location.
    sha256 : str or None
        Full hex sha256 of the file when known; verified on every use.
    sha256_prefix : str or None
        Leading hex digits of the sha256 (torch-hub convention, ``name-<prefix>.pth``).
    mirrors : tuple of str
        Further URLs tried in order after ``url``.
    description : str
        One line for messages (e.g. ``"OpenL3 mel256/music audio model (Keras HDF5, gzip)"``).
    """

    model: str
    filename: str
    url: str
    sha256: str | None = None
    sha256_prefix: str | None = None
    mirrors: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not self.filename or "/" in self.filename or "\\" in self.filename:
            raise ParameterError(
                f"WeightFile.filename must be a bare file name, got {self.filename!r}"
            )
        for name, value in (("sha256", self.sha256), ("sha256_prefix", self.sha256_prefix)):
            if value is not None and (not value or any(c not in "0123456789abcdef" for c in value)):
                raise ParameterError(
                    f"WeightFile({self.filename!r}).{name} must be lower-case hex, got {value!r}"
                )

    @property
    def urls(self) -> tuple[str, ...]:
        """Every URL to try, official first."""
        return (self.url, *self.mirrors)


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights file that was found or downloaded, and the sha256 of its bytes."""

    weight_file: WeightFile
    path: Path
    sha256: str
    origin: str  # "weights_dir", "cache" or "download"


@dataclass(frozen=True)
class LoadedWeights:
    """A converted state dict and what it came from (for run.json and output manifests)."""

    state_dict: dict[str, torch.Tensor] = field(repr=False)
    sources: tuple[ResolvedWeights, ...]
    converted_path: Path | None

    @property
    def sha256(self) -> str:
        """sha256 of the source file (of the ``;``-joined digests when there are several)."""
        return combined_sha256([s.sha256 for s in self.sources])


# -- registry ------------------------------------------------------------------------------
_WEIGHT_FILES: dict[tuple[str, str], WeightFile] = {}


def register_weight_file(wf: WeightFile) -> WeightFile:
    """Add a file to the registry (idempotent for an identical entry) and return it."""
    key = (wf.model, wf.filename)
    old = _WEIGHT_FILES.get(key)
    if old is not None and old != wf:
        raise ParameterError(
            f"weight file {wf.model}/{wf.filename} is already registered differently"
        )
    _WEIGHT_FILES[key] = wf
    return wf


def get_weight_file(model: str, filename: str) -> WeightFile:
    """Registered entry for ``model``'s ``filename``."""
    try:
        return _WEIGHT_FILES[(model, filename)]
    except KeyError:
        known = ", ".join(f for m, f in sorted(_WEIGHT_FILES) if m == model) or "none"
        raise ParameterError(
            f"no weight file {filename!r} registered for model {model!r}; registered: {known}"
        ) from None


# -- locations -----------------------------------------------------------------------------
def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache root: ``cache_dir`` if given, else ``$PERCEPTUAL_AUDIO_CACHE``, else the default."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else DEFAULT_CACHE_DIR.expanduser()


def cache_path(wf: WeightFile, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where ``wf`` lives (or will be downloaded to) in the cache: ``<cache>/<model>/<filename>``."""
    return default_cache_dir(cache_dir) / wf.model / wf.filename


def weights_dir_paths(wf: WeightFile, weights_dir: str | os.PathLike) -> list[Path]:
    """Paths accepted inside a ``--weights-dir``: ``DIR/<filename>``, ``DIR/<model>/<filename>``."""
    d = Path(weights_dir).expanduser()
    return [d / wf.filename, d / wf.model / wf.filename]


def downloads_disabled() -> bool:
    """True when :data:`OFFLINE_ENV` is set to 1/yes/true."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "yes", "true", "on"}


# -- verification --------------------------------------------------------------------------
def verify_sha256(wf: WeightFile, path: Path, digest: str | None = None) -> str:
    """Check ``path`` against the sha256 (or prefix) known for ``wf``; return its sha256.

    Raises
    ------
    WeightsVerificationError
        Naming the file, the expected and the received digest, and what to do.
    """
    digest = digest if digest is not None else sha256_file(path)
    expected = wf.sha256 or wf.sha256_prefix
    if expected is not None and not digest.startswith(expected):
        kind = "sha256" if wf.sha256 else "sha256 prefix"
        raise WeightsVerificationError(
            f"{wf.model} weights file {path} fails verification: expected {kind} {expected}, "
            f"received sha256 {digest}. The file is corrupt or not the official "
            f"{wf.filename}; delete it and fetch it again from {wf.url}"
        )
    return digest


def combined_sha256(digests: Sequence[str]) -> str:
    """One digest for a model made of several files: the digest itself for one file, else
    the sha256 of the ``;``-joined digests (order as given)."""
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256(";".join(digests).encode()).hexdigest()


# -- download ------------------------------------------------------------------------------
def _tqdm_progress(desc: str) -> tuple[ProgressCallback, Callable[[], None]]:
    from tqdm import tqdm  # deferred: only a download shows a bar

    bar = tqdm(desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False)

    def update(done: int, total: int | None) -> None:
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    return update, bar.close


def download_file(
    url: str,
    target: str | os.PathLike,
    *,
    wf: WeightFile | None = None,
    progress: ProgressCallback | None = None,
    timeout_seconds: float = DOWNLOAD_TIMEOUT_SECONDS,
) -> str:
    """Download ``url`` to ``target`` atomically and return the sha256 of its bytes.

    The bytes go to a temporary file beside ``target`` that is renamed into place only after
    the whole body arrived and, when ``wf`` is given, passed :func:`verify_sha256`. A progress
    bar (tqdm, on stderr) is shown only when stderr is a terminal and no ``progress`` callback
    is given.

    Raises
    ------
    OSError, urllib.error.URLError
        Network or file errors (the caller turns them into an unavailability message).
    WeightsVerificationError
        The downloaded bytes do not match the known sha256 (nothing is left at ``target``).
    """
    target = Path(target)
    close: Callable[[], None] | None = None
    if progress is None and sys.stderr is not None and sys.stderr.isatty():
        progress, close = _tqdm_progress(target.name)
    try:
        h = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=timeout_seconds) as response:  # noqa: S310
            length = response.headers.get("Content-Length") if response.headers else None
            total = int(length) if length and length.isdigit() else None
            done = 0
            with atomic_path(target) as tmp:
                with open(tmp, "wb") as f:
                    while chunk := response.read(_CHUNK_BYTES):
                        f.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
                if total is not None and done != total:
                    raise OSError(f"download of {url} ended after {done} of {total} bytes")
                digest = h.hexdigest()
                if wf is not None:
                    verify_sha256(wf, target, digest)
    finally:
        if close is not None:
            close()
    logger.info("downloaded %s -> %s (sha256 %s)", url, target, digest)
    return digest


# -- lookup --------------------------------------------------------------------------------
def fetch_instructions(
    wfs: Iterable[WeightFile],
    *,
    weights_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> str:
    """Lines telling a user which URL to fetch to which exact path, one block per file."""
    lines = []
    for wf in wfs:
        lines.append(f"  {wf.filename}" + (f" ({wf.description})" if wf.description else ""))
        for u in wf.urls:
            lines.append(f"    download: {u}")
        lines.append(f"    save as:  {cache_path(wf, cache_dir=cache_dir)}")
        if weights_dir is not None:
            lines.append(f"    or as:    {weights_dir_paths(wf, weights_dir)[0]}")
        else:
            lines.append(f"    or as:    <DIR>/{wf.filename} and pass --weights-dir <DIR>")
    return "\n".join(lines)


def unavailable_message(
    model: str,
    failures: Sequence[tuple[WeightFile, str]],
    *,
    weights_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> str:
    """The full text of a :class:`WeightsUnavailableError` for ``model``.

    ``failures`` pairs each missing file with the reason its download did not happen.
    """
    head = f"{model} weights are unavailable: " + "; ".join(
        f"{wf.filename} is not in "
        + (
            f"--weights-dir {Path(weights_dir).expanduser()} nor "
            if weights_dir is not None
            else ""
        )
        + f"the cache {cache_path(wf, cache_dir=cache_dir).parent} and {reason}"
        for wf, reason in failures
    )
    return (
        f"{head}.\nFetch the file(s) by hand and put each at the path shown "
        f"(the cache folder is ${CACHE_ENV}, default {DEFAULT_CACHE_DIR}):\n"
        + fetch_instructions(
            [wf for wf, _ in failures], weights_dir=weights_dir, cache_dir=cache_dir
        )
    )


def _find_local(
    wf: WeightFile, weights_dir: str | os.PathLike | None, cache_dir: str | os.PathLike | None
) -> tuple[Path, str] | None:
    if weights_dir is not None:
        for p in weights_dir_paths(wf, weights_dir):
            if p.is_file():
                return p, "weights_dir"
    p = cache_path(wf, cache_dir=cache_dir)
    if p.is_file():
        return p, "cache"
    return None


def _try_download(
    wf: WeightFile, target: Path, progress: ProgressCallback | None
) -> tuple[str | None, str]:
    """Try each URL; return (sha256 or None, reason of the last failure)."""
    reasons = []
    for u in wf.urls:
        logger.info("downloading %s weights from %s", wf.model, u)
        try:
            return download_file(u, target, wf=wf, progress=progress), ""
        except WeightsVerificationError:
            raise
        except (OSError, urllib.error.URLError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            reasons.append(f"{u}: {reason}")
            logger.info("download of %s failed: %s", u, reason)
    return None, "the download failed (" + "; ".join(reasons) + ")"


def resolve_weight_files(
    wfs: Sequence[WeightFile],
    *,
    weights_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: ProgressCallback | None = None,
) -> list[ResolvedWeights]:
    """Find, download if needed, and verify every file of one model.

    Parameters
    ----------
    wfs : sequence of WeightFile
        The files (all of the same model) the model needs.
    weights_dir : path-like or None
        Folder of files fetched by hand (``--weights-dir``); searched first.
    cache_dir : path-like or None
        Cache root; None uses ``$PERCEPTUAL_AUDIO_CACHE`` or ``~/.cache/perceptual_audio``.
    download : bool
        Try the URLs when a file is nowhere local (also off when ``$PERCEPTUAL_AUDIO_OFFLINE``).
    progress : callable or None
        ``progress(bytes_done, bytes_total)`` during downloads.

    Returns
    -------
    list of ResolvedWeights
        In the order of ``wfs``, each with the sha256 of the bytes found.

    Raises
    ------
    WeightsUnavailableError
        One message listing every missing file with its URLs and target paths.
    WeightsVerificationError
        A file is present (or was downloaded) but its sha256 is not the known one.
    """
    if not wfs:
        raise ParameterError("resolve_weight_files needs at least one WeightFile, got none")
    resolved: list[ResolvedWeights] = []
    failures: list[tuple[WeightFile, str]] = []
    for wf in wfs:
        found = _find_local(wf, weights_dir, cache_dir)
        if found is not None:
            path, origin = found
            resolved.append(ResolvedWeights(wf, path, verify_sha256(wf, path), origin))
            continue
        if not download or downloads_disabled():
            why = "download=False" if not download else f"${OFFLINE_ENV} is set"
            failures.append((wf, f"downloading is disabled ({why})"))
            continue
        target = cache_path(wf, cache_dir=cache_dir)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            failures.append((wf, f"the cache folder cannot be created ({e})"))
            continue
        digest, reason = _try_download(wf, target, progress)
        if digest is None:
            failures.append((wf, reason))
        else:
            resolved.append(ResolvedWeights(wf, target, digest, "download"))
    if failures:
        model = wfs[0].model
        raise WeightsUnavailableError(
            unavailable_message(model, failures, weights_dir=weights_dir, cache_dir=cache_dir)
        )
    return resolved


def resolve_weight_file(
    wf: WeightFile,
    *,
    weights_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: ProgressCallback | None = None,
) -> Path:
    """Path of one verified weights file (see :func:`resolve_weight_files`)."""
    return resolve_weight_files(
        [wf], weights_dir=weights_dir, cache_dir=cache_dir, download=download, progress=progress
    )[0].path


# -- conversion ----------------------------------------------------------------------------
def converted_path(
    source: ResolvedWeights, tag: str, *, cache_dir: str | os.PathLike | None = None
) -> Path:
    """Where the converted state dict of ``source`` is cached:
    ``<cache>/<model>/<filename>.<tag>-<sha256[:16]>.pt``."""
    if not tag or any(c in tag for c in "/\\ "):
        raise ParameterError(f"conversion tag must be a non-empty word, got {tag!r}")
    wf = source.weight_file
    return (
        cache_path(wf, cache_dir=cache_dir).parent / f"{wf.filename}.{tag}-{source.sha256[:16]}.pt"
    )


def _check_state_dict(sd: object, where: str) -> dict[str, torch.Tensor]:
    if not isinstance(sd, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()
    ):
        raise WeightsVerificationError(
            f"{where} does not hold a state dict (str -> tensor); got {type(sd).__name__}"
        )
    return sd


def load_converted(
    wfs: WeightFile | Sequence[WeightFile],
    convert: Callable[..., dict[str, torch.Tensor]],
    *,
    tag: str,
    weights_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: ProgressCallback | None = None,
) -> LoadedWeights:
    """Resolve a model's files, convert them once to a torch state dict, and load it.

    Parameters
    ----------
    wfs : WeightFile or sequence of WeightFile
        The source file(s).
    convert : callable
        ``convert(path, ...) -> dict[str, torch.Tensor]`` called with one path per file in
        the order of ``wfs``. It must check structure and shapes and raise
        :class:`WeightsVerificationError` naming the file when they are wrong.
    tag : str
        Converter version; change it when the conversion changes so old caches are ignored.
    weights_dir, cache_dir, download, progress
        As in :func:`resolve_weight_files`.

    Returns
    -------
    LoadedWeights
        The state dict (CPU tensors), the sources with their sha256, and the cached ``.pt``.
    """
    wfs = [wfs] if isinstance(wfs, WeightFile) else list(wfs)
    sources = resolve_weight_files(
        wfs, weights_dir=weights_dir, cache_dir=cache_dir, download=download, progress=progress
    )
    first = sources[0]
    if len(sources) > 1:  # key the conversion on every source
        first = ResolvedWeights(
            first.weight_file,
            first.path,
            combined_sha256([s.sha256 for s in sources]),
            first.origin,
        )
    out = converted_path(first, tag, cache_dir=cache_dir)
    if out.is_file():
        try:
            sd = torch.load(out, map_location="cpu", weights_only=True)
            return LoadedWeights(_check_state_dict(sd, str(out)), tuple(sources), out)
        except Exception as e:  # a broken cache entry: convert again
            logger.warning("cannot load converted weights %s (%s); converting again", out, e)
    sd = _check_state_dict(convert(*[s.path for s in sources]), f"converter {tag!r} output")
    try:
        with atomic_path(out) as tmp:
            torch.save(sd, tmp)
        logger.info("converted %s -> %s", ", ".join(str(s.path) for s in sources), out)
        saved: Path | None = out
    except OSError as e:
        logger.warning("cannot cache converted weights at %s (%s); using them from memory", out, e)
        saved = None
    return LoadedWeights(sd, tuple(sources), saved)
