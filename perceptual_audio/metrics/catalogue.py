"""The metric catalogue, the one owner of what a metric is: a :class:`MetricSpec` per
``pair_metrics.csv`` column; the computations behind the columns are in
:mod:`perceptual_audio.metrics.groups`."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from perceptual_audio.errors import ParameterError
from perceptual_audio.metrics.groups import (
    AUDIO_GROUPS,
    CLEAN_SUFFIX,
    ROLE_CLEAN,
    ROLE_PAIR,
)
from perceptual_audio.metrics.measures import (
    EMBEDDING_METRIC_SUFFIXES,
    PESQ_MOS_LQO_RANGE,
    PESQ_NB_SAMPLE_RATE,
    PESQ_WB_SAMPLE_RATE,
    extra_metrics,
    registered_model_class,
)
from perceptual_audio.metrics.peaq.columns import (
    PEAQ_SPEC_FIELDS,
)
from perceptual_audio.metrics.signal import package_version

logger = logging.getLogger(__name__)


#: Kinds of metric: the classic objective measures, the reference perceptual metrics (the
#: strongest published predictors of perceived quality), and the neural embedding metrics
#: under study.
KIND_CLASSIC = "classic"
KIND_REFERENCE = "reference"
KIND_NEURAL = "neural"
KINDS = (KIND_CLASSIC, KIND_REFERENCE, KIND_NEURAL)
#: Domains: a metric designed and validated for speech only, or for any audio.
DOMAIN_SPEECH = "speech"
DOMAIN_ANY = "any"


@dataclass(frozen=True)
class MetricSpec:
    """One column of ``pair_metrics.csv``: what it measures and how to present it.

    Attributes
    ----------
    name : str
        Column name (``pesq_wb``, ``visqol_audio``, ``openl3_cosine``).
    label : str
        Short human name (``PESQ-WB``).
    unit : str
        Unit or range for axis labels (``MOS-LQO, 1-4.64``, ``dB``).
    higher_is_better : bool
        True when a larger value means closer to the clean reference (or better quality).
    kind : str
        :data:`KIND_CLASSIC`, :data:`KIND_REFERENCE` or :data:`KIND_NEURAL`.
    sample_rate : int or None
        Hz the metric runs at (the audio is resampled to it); None: the study's own rate
        (SI-SDR) or, for embedding metrics, set by the model's front end.
    full_reference : bool
        False for a no-reference metric (DNSMOS: the degraded file alone).
    domain : str
        :data:`DOMAIN_SPEECH` (designed for speech; on music it still runs, marked) or
        :data:`DOMAIN_ANY`.
    package : str or None
        PyPI distribution that computes it (None: this package's own numpy code).
    group : str
        The computation that yields it; the columns of one group are computed together, once
        (DNSMOS's four scores).
    bounds : (float, float) or None
        The range of values where the metric is bounded (None where unbounded).
    model : str or None
        Embedding model of a neural metric.
    role : str
        :data:`ROLE_PAIR` (analysed) or :data:`ROLE_CLEAN` (the clean file's score, context).
    description : str
        One sentence for the report.
    headline : bool
        A headline measure: shown in the report's At-a-glance table, the Listen cards and as
        a main judge of the loss audit (the report's choices live here, not in the report).
    validated_by : str or None
        Where the metric's agreement with listeners was shown (a citation, e.g. ``ODAQ
        (Fraunhofer IIS 2024)``); metrics with one form the reference panel a study without
        ratings is judged against. None: not validated against listeners here.
    optional : bool
        Computed only when ``--metrics`` names it or its group (PEAQ's model output
        variables): not part of ``all`` or of a kind.
    """

    name: str
    label: str
    unit: str
    higher_is_better: bool
    kind: str = KIND_CLASSIC
    sample_rate: int | None = None
    full_reference: bool = True
    domain: str = DOMAIN_ANY
    package: str | None = None
    group: str = ""
    bounds: tuple[float, float] | None = None
    model: str | None = None
    role: str = ROLE_PAIR
    description: str = ""
    headline: bool = False
    validated_by: str | None = None
    optional: bool = False

    @property
    def validated(self) -> bool:
        """True when the metric's agreement with listeners is established (see validated_by)."""
        return self.validated_by is not None

    @property
    def neural(self) -> bool:
        """True for metrics computed from a neural embedding model."""
        return self.kind == KIND_NEURAL

    @property
    def is_reference(self) -> bool:
        """True for the references the neural metrics are compared with (classic and
        reference perceptual metrics of the pair)."""
        return self.kind in (KIND_CLASSIC, KIND_REFERENCE) and self.role == ROLE_PAIR

    @property
    def speech_only(self) -> bool:
        return self.domain == DOMAIN_SPEECH

    @property
    def marked_label(self) -> str:
        """Label with its domain mark: ``DNSMOS OVRL [speech]`` for a speech-only metric."""
        return f"{self.label} [speech]" if self.speech_only else self.label

    @property
    def axis_label(self) -> str:
        """Marked label with unit, for plot axes."""
        return f"{self.marked_label} ({self.unit})" if self.unit else self.marked_label

    @property
    def direction_note(self) -> str:
        return "higher = closer to clean" if self.higher_is_better else "lower = closer to clean"

    @property
    def version(self) -> str | None:
        """Installed version of :attr:`package` (None when absent or not a package)."""
        return package_version(self.package) if self.package else None

    @property
    def rate_text(self) -> str:
        if self.sample_rate is None:
            return "model's rate" if self.neural else "study rate"
        return f"{self.sample_rate / 1000:g} kHz"


# -- embedding metrics ----------------------------------------------------------------------


def value_range(name: str) -> tuple[float | None, float | None]:
    """(low, high) of metric ``name``'s values from its catalogue ``bounds``; None where
    unbounded. Confidence intervals of a mean are kept inside it (stats.mean_ci)."""
    bounds = describe(name).bounds
    if bounds is None:
        return (None, None)
    return tuple(None if not math.isfinite(b) else float(b) for b in bounds)


_PESQ_RANGE = "PESQ MOS-LQO"
#: Where the reference panel's agreement with listeners was shown (docs: README, "The
#: reference panel"). Zimtohrli's MOS column is a fixed mapping of its distance, so only the
#: distance joins the panel (one vote per metric).
VISQOL_AUDIO_VALIDATION = (
    "Hines et al., ViSQOLAudio, JASA 137(6), 2015; Chinen et al., ViSQOL v3, QoMEX 2020: "
    "agreement with MUSHRA/MOS ratings of coded music and speech"
)
ZIMTOHRLI_VALIDATION = (
    "google/zimtohrli COMPARISON.md (2024): Spearman with listener scores on public "
    "listening-test datasets (coresv.net, TCD-VoIP, SEBASS-DB, PerceptualAudio JND), "
    "beside ViSQOL, PESQ and DNSMOS"
)
_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "pesq_wb", "PESQ-WB", "MOS-LQO, 1-4.64", True, KIND_CLASSIC, PESQ_WB_SAMPLE_RATE,
        domain=DOMAIN_SPEECH, package="pesq", group="pesq_wb", bounds=PESQ_MOS_LQO_RANGE,
        description="wide-band PESQ, ITU-T P.862.2 (2005)", headline=True,
    ),
    MetricSpec(
        "pesq_nb", "PESQ-NB", "MOS-LQO, 1-4.55", True, KIND_CLASSIC, PESQ_NB_SAMPLE_RATE,
        domain=DOMAIN_SPEECH, package="pesq", group="pesq_nb", bounds=PESQ_MOS_LQO_RANGE,
        description="narrow-band PESQ, ITU-T P.862 (2001), at --pesq-nb-rate",
    ),
    MetricSpec(
        "stoi", "STOI", "0-1", True, KIND_CLASSIC, 10000, domain=DOMAIN_SPEECH,
        package="pystoi", group="stoi", bounds=(-1.0, 1.0),
        description="short-time objective intelligibility (Taal et al. 2011)", headline=True,
    ),
    MetricSpec(
        "estoi", "ESTOI", "0-1", True, KIND_CLASSIC, 10000, domain=DOMAIN_SPEECH,
        package="pystoi", group="estoi", bounds=(-1.0, 1.0),
        description="extended STOI (Jensen & Taal 2016)",
    ),
    MetricSpec(
        "si_sdr", "SI-SDR", "dB", True, KIND_CLASSIC, None, group="si_sdr",
        description="scale-invariant signal-to-distortion ratio (Le Roux et al. 2019)",
        headline=True,
    ),
    MetricSpec(
        "visqol_audio", "ViSQOL audio", "MOS-LQO, 1-5", True, KIND_REFERENCE, 48000,
        package="visqol-python", group="visqol_audio", bounds=(1.0, 5.0),
        description="ViSQOL v3 audio mode (gammatone NSIM + SVR), 48 kHz", headline=True,
        validated_by=VISQOL_AUDIO_VALIDATION,
    ),
    MetricSpec(
        "visqol_speech", "ViSQOL speech", "MOS-LQO, 1-5", True, KIND_REFERENCE, 16000,
        domain=DOMAIN_SPEECH, package="visqol-python", group="visqol_speech", bounds=(1.0, 5.0),
        description="ViSQOL v3 speech mode, 16 kHz, deep-lattice MOS mapping (C++ default; "
        "exponential mapping by setting)",
    ),
    MetricSpec(
        "zimtohrli", "Zimtohrli distance", "Zimtohrli units", False, KIND_REFERENCE, 48000,
        package="zimtohrli", group="zimtohrli", bounds=(0.0, math.inf),
        description="Zimtohrli psychoacoustic distance, 48 kHz", headline=True,
        validated_by=ZIMTOHRLI_VALIDATION,
    ),
    MetricSpec(
        "zimtohrli_mos", "Zimtohrli MOS", "MOS, 1-5", True, KIND_REFERENCE, 48000,
        package="zimtohrli", group="zimtohrli", bounds=(1.0, 5.0),
        description="Zimtohrli's MOS mapping of its distance",
    ),
    *(
        MetricSpec(
            f"dnsmos_{key}", f"DNSMOS {text}", "MOS, 1-5", True, KIND_REFERENCE, 16000,
            full_reference=False, domain=DOMAIN_SPEECH, package="speechmos", group="dnsmos",
            bounds=(1.0, 5.0), description=f"DNSMOS {desc} of the degraded file, no reference",
        )
        for key, text, desc in (
            ("ovrl", "OVRL", "P.835 overall quality"),
            ("sig", "SIG", "P.835 speech signal quality"),
            ("bak", "BAK", "P.835 background-noise quality"),
            ("p808", "P.808", "P.808 overall quality"),
        )
    ),
    *(
        MetricSpec(
            f"dnsmos_{key}{CLEAN_SUFFIX}", f"DNSMOS {text} (clean)", "MOS, 1-5", True,
            KIND_REFERENCE, 16000, full_reference=False, domain=DOMAIN_SPEECH,
            package="speechmos", group="dnsmos_clean", bounds=(1.0, 5.0), role=ROLE_CLEAN,
            description=f"DNSMOS {text} of the clean file (computed once per clean file)",
        )
        for key, text in (("ovrl", "OVRL"), ("sig", "SIG"), ("bak", "BAK"), ("p808", "P.808"))
    ),
    *(MetricSpec(kind=KIND_REFERENCE, sample_rate=48000, **f) for f in PEAQ_SPEC_FIELDS),
)  # fmt: skip

#: Every audio metric (not tied to an embedding model), by column name, in table order.
CATALOGUE: dict[str, MetricSpec] = {s.name: s for s in _SPECS}

#: The computations behind the audio metrics, by group name, in table order.
#: The classic metrics, in table order (derived from the catalogue).
CLASSIC_METRICS = tuple(n for n, s in CATALOGUE.items() if s.kind == KIND_CLASSIC)


def embedding_specs(model: str) -> tuple[MetricSpec, ...]:
    """The generated catalogue entries of one embedding model (``<model>_cosine``, ...,
    then the model's declared extra metrics such as ``cdpam_distance``)."""
    cls = registered_model_class(model)
    display = cls.label() if cls is not None else model.replace("_", " ")
    rate = cls.sample_rate if cls is not None else None
    package = cls.metric_package if cls is not None else None
    common = {"kind": KIND_NEURAL, "sample_rate": rate, "package": package, "group": model}
    specs = [
        MetricSpec(
            f"{model}_cosine", f"{display} cosine (frame-aligned)", "-1 to 1", True,
            bounds=(-1.0, 1.0), model=model,
            description=f"cosine similarity of frame-aligned {display} embeddings, mean over frames",
            headline=True, **common,
        ),
        MetricSpec(
            f"{model}_cosine_pooled", f"{display} cosine (mean-pooled)", "-1 to 1", True,
            bounds=(-1.0, 1.0), model=model,
            description=f"cosine similarity of the mean {display} embeddings", **common,
        ),
        MetricSpec(
            f"{model}_l2", f"{display} L2 distance", "embedding units", False,
            bounds=(0.0, math.inf), model=model,
            description=f"mean Euclidean distance of frame-aligned {display} embeddings",
            **common,
        ),
    ]  # fmt: skip
    for e in extra_metrics(model):
        specs.append(
            MetricSpec(
                e.name, e.label, e.unit, e.higher_is_better, bounds=e.bounds, model=model,
                description=e.description, headline=e.headline, **common,
            )
        )  # fmt: skip
    return tuple(specs)


def model_display_name(model: str) -> str:
    """The display name of a model (its registered ``display_name``; else the key)."""
    cls = registered_model_class(model)
    return cls.label() if cls is not None else model.replace("_", " ")


def model_metric_names(model: str) -> tuple[str, ...]:
    """Columns of one embedding model, in table order."""
    return tuple(s.name for s in embedding_specs(model))


def find_spec(name: str) -> MetricSpec | None:
    """The catalogue entry of a column (audio metric or generated embedding metric), or None."""
    if name in CATALOGUE:
        return CATALOGUE[name]
    from perceptual_audio.embeddings.base import (
        model_names,  # deferred: the model registry imports torch
    )

    for model in model_names():
        for spec in embedding_specs(model)[len(EMBEDDING_METRIC_SUFFIXES) :]:
            if spec.name == name:  # a model's extra metric (cdpam_distance)
                return spec
    for suffix in sorted(EMBEDDING_METRIC_SUFFIXES, key=len, reverse=True):
        if name.endswith("_" + suffix) and len(name) > len(suffix) + 1:
            model = name[: -len(suffix) - 1]
            return next(s for s in embedding_specs(model) if s.name == name)
    return None


def describe(name: str) -> MetricSpec:
    """The catalogue entry of a column; a column the catalogue does not know (a metric added
    by hand to a table) gets a neutral description, a distance if its name says so."""
    spec = find_spec(name)
    if spec is not None:
        return spec
    lower = any(w in name for w in ("distance", "_l2", "_l1", "mse", "loss", "error"))
    return MetricSpec(name, name.replace("_", " "), "", not lower, kind="other")


def higher_is_better(name: str) -> bool:
    """Whether a larger value of the column ``name`` means closer to the clean reference."""
    return describe(name).higher_is_better


def metric_columns(models: Sequence[str] = (), selected: Sequence[str] | None = None) -> list[str]:
    """Value columns of ``pair_metrics.csv``: audio metrics, then each model's, in table order.

    Parameters
    ----------
    models : sequence of str
        Embedding models whose metrics are present.
    selected : sequence of str or None
        Restrict to these columns (None: all).
    """
    cols = list(CATALOGUE)
    for m in models:
        cols += model_metric_names(m)
    if selected is None:  # optional columns (PEAQ's MOVs) only when asked for
        return [c for c in cols if not describe(c).optional]
    keep = set(selected)
    return [c for c in cols if c in keep]


def is_metric_column(name: str) -> bool:
    """True for a column the catalogue knows (audio or embedding metric)."""
    return find_spec(name) is not None


def analysed_metrics(names: Sequence[str]) -> list[str]:
    """The columns that are statistics material (pair measurements, not clean-file context)."""
    return [n for n in names if describe(n).role == ROLE_PAIR]


def reference_metric_names(names: Sequence[str]) -> list[str]:
    """The references among ``names``: classic and reference perceptual pair metrics."""
    return [n for n in names if describe(n).is_reference]


def neural_metric_names(names: Sequence[str]) -> list[str]:
    return [n for n in names if describe(n).neural]


def headline_metric_names(names: Sequence[str]) -> list[str]:
    """The headline measures among ``names`` (``MetricSpec.headline``), in their order."""
    return [n for n in names if describe(n).headline and describe(n).role == ROLE_PAIR]


def panel_metric_names(names: Sequence[str]) -> list[str]:
    """The reference panel among ``names``: pair metrics validated against listeners
    (``MetricSpec.validated_by``), what a study without ratings is judged against."""
    return [n for n in names if describe(n).validated and describe(n).role == ROLE_PAIR]


def metric_selectors(models: Sequence[str]) -> dict[str, list[str]]:
    """Every name ``--metrics`` accepts and the columns it stands for: ``all``, the kinds
    (``classic``, ``reference``, ``neural``), the group names (``dnsmos``, ``zimtohrli``) and
    every column. A no-reference group brings its clean-file columns along."""
    everything = metric_columns(
        models, [*CATALOGUE, *(c for m in models for c in model_metric_names(m))]
    )
    columns = metric_columns(models)
    out: dict[str, list[str]] = {"all": columns}
    for kind in KINDS:
        out[kind] = [c for c in columns if describe(c).kind == kind]
    for group in AUDIO_GROUPS.values():
        if len(group.columns) > 1:
            out[group.name] = list(group.columns)
    out["dnsmos"] = [*AUDIO_GROUPS["dnsmos"].columns, *AUDIO_GROUPS["dnsmos_clean"].columns]
    out["visqol"] = ["visqol_audio", "visqol_speech"]
    out["pesq"] = ["pesq_wb", "pesq_nb"]
    for m in models:
        out[m] = list(model_metric_names(m))
    for c in everything:
        out[c] = [c]
    return out


def parse_metric_list(text: str, models: Sequence[str]) -> list[str]:
    """``--metrics`` -> the selected columns, in table order.

    Raises
    ------
    ParameterError
        For an empty list or an unknown name; the message lists every valid name.
    """
    selectors = metric_selectors(models)
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in selectors]
    if not names or unknown:
        what = f"unknown metric name(s) {', '.join(unknown)}" if unknown else "an empty list"
        raise ParameterError(f"--metrics: got {what}; valid names: {', '.join(selectors)}")
    chosen = {c for n in names for c in selectors[n]}
    # A group is computed whole, once: selecting one of its columns brings the others.
    for group in AUDIO_GROUPS.values():
        if chosen & set(group.columns):
            chosen |= set(group.columns)
    if chosen & set(AUDIO_GROUPS["dnsmos"].columns):
        chosen |= set(AUDIO_GROUPS["dnsmos_clean"].columns)
    order = [c for cols in selectors.values() for c in cols]
    return [c for c in dict.fromkeys(order) if c in chosen]
