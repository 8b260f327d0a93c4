"""Stage 4: figures, a written analysis and a self-contained HTML report from ``results/``.

``visualize_results.py --results-dir results --output-dir results/visualizations`` reads the
tables of stage 3 (and, for the setup section, the audio manifest and the embedding folders'
``run.json``) and writes into the output folder:

(``<fmt>``: each format of ``--figure-format``, default png; report.html embeds the PNG)

- ``scatter_<neural metric>.<fmt>``: the metric against the judges (the reference panel of
  metrics validated against listeners, else PESQ-WB and STOI), per pair;
- ``heatmap_pearson.<fmt>``, ``heatmap_spearman.<fmt>``: correlations among all metrics;
- ``bars_by_degradation.<fmt>``: every metric per family and level with 95% CIs;
- ``severity_curves.<fmt>``: every metric against severity, one line per family;
- ``family_<family>.<fmt>``: small multiples per family (when there are several);
- ``analysis_report.txt`` and ``report.html`` (figures embedded, opens offline);
- ``run.json``.

A rerun with unchanged inputs and options does nothing (``--force`` redoes everything).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from perceptual_audio import listening, options
from perceptual_audio import report as report_module
from perceptual_audio.errors import PerceptualAudioError
from perceptual_audio.files import sha256_file, write_text_if_changed
from perceptual_audio.report import (
    HTML_REPORT_NAME,
    TEXT_REPORT_NAME,
    FigureBlock,
    StudyResults,
    build_report,
    load_results,
    loss_audit,
    render_html,
    render_text,
)
from perceptual_audio.report import audio as report_audio
from perceptual_audio.report import content as report_content
from perceptual_audio.report.figure_plan import figure_plan
from perceptual_audio.report.listening_export import export_listening_test
from perceptual_audio.results import (
    CORRELATIONS_NAME,
    MONOTONICITY_NAME,
    PAIR_METRICS_NAME,
    RUN_JSON_NAME,
    SUMMARY_NAME,
    read_pair_table,
)
from perceptual_audio.stages import cli, shards, work
from perceptual_audio.stages.skeleton import StageRun
from perceptual_audio.stages.skeleton import run_stage as run_stage_skeleton
from perceptual_audio.stages.visualize_settings import (
    DEFAULT_DPI,
    DEFAULT_RESULTS_DIR,
    VisualizeSettings,
    embedded_format,
    figure_formats,
)

logger = logging.getLogger(__name__)

STAGE_NAME = "visualize_results"
#: Bumped when the stage's outputs change meaning: a rerun then redoes everything.
OUTPUT_VERSION = 1


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``visualize_results.py``."""
    parser = argparse.ArgumentParser(
        prog="visualize_results.py",
        description="Stage 4: figures, analysis_report.txt and a self-contained report.html "
        "from the tables of calculate_metrics.py.",
        formatter_class=cli.HelpFormatter,
        epilog="Example:\n  python visualize_results.py --results-dir results "
        "--output-dir results/visualizations\n"
        "Exit status: 0 ok; 1 a figure failed, the results are unreadable, or another run "
        "holds the folder; 2 bad command line (also: a --results-dir without pair_metrics.csv, "
        "an --output-dir of another stage); 130 interrupted.",
    )
    _add_folder_arguments(parser)
    _add_figure_arguments(parser)
    _add_audio_arguments(parser)
    _add_study_arguments(parser)
    cli.add_common_arguments(parser, workers=False)
    return parser


def _add_folder_arguments(parser: argparse.ArgumentParser) -> None:
    """--results-dir and --output-dir."""
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=Path(DEFAULT_RESULTS_DIR),
        metavar="DIR",
        help="folder written by calculate_metrics.py (pair_metrics.csv, "
        "summary_by_degradation.csv, correlations.csv, monotonicity.csv)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where figures and reports go (default: <results-dir>/visualizations)",
    )


def _add_figure_arguments(parser: argparse.ArgumentParser) -> None:
    """The figure files: formats and resolution."""
    parser.add_argument(
        "--figure-format",
        "--format",
        dest="format",
        type=figure_formats,
        default=("png",),
        metavar="FMT[,FMT]",
        help="figure file formats, comma-separated: png, svg, pdf (SVG and PDF keep their "
        "text as text, fonts embedded or named, for papers); report.html embeds the PNG "
        "(the SVG when only svg is asked; pdf alone also writes the PNG)",
    )
    parser.add_argument(
        "--dpi",
        type=options.positive_int,
        default=DEFAULT_DPI,
        help="resolution of PNG figures, dots per inch",
    )


def _add_audio_arguments(parser: argparse.ArgumentParser) -> None:
    """The audio folder (setup section, players) and the players of report.html."""
    parser.add_argument(
        "--audio-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="audio folder of stages 1-2, for the degradation parameters in the "
        "setup section (default: as recorded in <results-dir>/run.json, "
        "else test_audio beside the results folder)",
    )
    parser.add_argument(
        "--audio-examples",
        type=options.nonnegative_int,
        default=report_audio.DEFAULT_EXAMPLES,
        metavar="N",
        help="pairs to embed as audio players in report.html (clean beside degraded, "
        f"{report_audio.CLIP_SECONDS:g} s MP3 clips): a quarter where metrics disagree most, "
        "the rest one typical pair per family and level; 0: no players",
    )
    parser.add_argument(
        "--audio-budget-mb",
        type=options.positive_float,
        default=report_audio.DEFAULT_BUDGET_MB,
        metavar="MB",
        help="size budget of the embedded audio in report.html, megabytes",
    )


def _add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """The per-content breakdown and the listening-test export."""
    parser.add_argument(
        "--content-types",
        type=Path,
        default=None,
        metavar="CSV",
        help="table path,content_type (path: clean file as in pair_metrics.csv, or the "
        "input file relative to stage 1's --input) for the per-content breakdown "
        "(default: the top folder of each input file: speech/, music/, ...)",
    )
    parser.add_argument(
        "--export-listening-test",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write a webMUSHRA test of the restorations to DIR (reference, hidden "
        "reference, 3.5 kHz anchor, degraded, each restoration; see "
        "scripts/mushra_to_long.py --webmushra for the results)",
    )


def _input_files(results: StudyResults) -> list[Path]:
    files = [
        results.results_dir / n
        for n in (
            PAIR_METRICS_NAME,
            SUMMARY_NAME,
            CORRELATIONS_NAME,
            MONOTONICITY_NAME,
            RUN_JSON_NAME,
            "listener_agreement.csv",
            "loss_audit.csv",
        )
    ]
    audio = Path(results.inputs.get("audio_dir", ""))
    files.append(audio / "manifest.csv")
    for m in results.models:
        if m.source:
            files += [Path(m.source) / RUN_JSON_NAME, Path(m.source) / "manifest.csv"]
    return [f for f in files if f.is_file()]


def inputs_digest(results: StudyResults, params: dict[str, Any]) -> str:
    """sha256 over the input files' contents and the options: equal digest = nothing to redo."""
    h = hashlib.sha256()
    h.update(json.dumps({**params, "output_version": OUTPUT_VERSION}, sort_keys=True).encode())
    # The code that draws and writes is an input too: a changed figure or sentence redraws.
    # report/ holds all of stage 4 (plots, audio examples, content breakdown included).
    for module in (Path(__file__), *report_module.MODULE_FILES, *listening.MODULE_FILES):
        h.update(sha256_file(module).encode())
    for f in _input_files(results):
        h.update(f.name.encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def _export_listening_test(results: StudyResults, out_dir: Path) -> int | None:
    """Write the webMUSHRA test (None: done, go on with the report; else an exit status)."""

    pairs = read_pair_table(results.results_dir / PAIR_METRICS_NAME)
    audio_dir = report_audio.find_audio_dir(results)
    if "kind" not in pairs or not (pairs["kind"] == "restored").any() or audio_dir is None:
        logger.error(
            "--export-listening-test: %s has no restored pairs (run extract_embeddings.py "
            "--restore and calculate_metrics.py first) or its audio folder is missing",
            results.results_dir / PAIR_METRICS_NAME,
        )
        return cli.EXIT_USAGE
    n = export_listening_test(pairs, audio_dir, out_dir)
    logger.info("wrote a webMUSHRA test of %d trials to %s", n, out_dir)
    return None


def run_stage(settings: VisualizeSettings) -> int:
    """Stage 4; returns the exit status."""
    return run_stage_skeleton(_Report(settings))


@dataclass
class _Report(StageRun[VisualizeSettings]):
    """Stage 4 in the skeleton: the items are the figures; the commit writes the reports."""

    stage: ClassVar[str] = STAGE_NAME

    results: StudyResults | None = None
    digest: str = ""
    prev_outputs: list[Path] = field(default_factory=list)
    figures: list[FigureBlock] = field(default_factory=list)
    written_files: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)

    def check(self) -> int | None:
        """Stage 3's results, complete and merged."""
        results_dir = self.settings.results_dir
        if shards.has_fragments(results_dir):  # the statistics describe the merged table only
            logger.error(
                "%s holds shard results that are not merged yet: run calculate_metrics.py with "
                "the same options and without --shard to merge them, then this stage",
                results_dir / shards.SHARDS_DIR,
            )
            return cli.EXIT_FAILED
        problem = cli.check_input_folder(
            results_dir,
            option="--results-dir",
            needs=PAIR_METRICS_NAME,
            made_by="calculate_metrics.py --results-dir DIR",
        )
        if problem is not None:
            return problem
        self.results = load_results(results_dir, audio_dir=self.settings.audio_dir)
        return None

    def claim(self) -> int | None:
        return cli.claim_output_folder(
            self.settings.out_dir,
            owner=STAGE_NAME,
            option="--output-dir",
            inputs=[("--results-dir", self.settings.results_dir, "calculate_metrics")],
        )

    def read(self) -> int | None:
        """The notes, an export of a listening test, the content types."""
        settings, results = self.settings, self.results
        for note in results.notes:
            logger.warning("%s", note.splitlines()[0])  # the reports keep the full text
        if settings.export_listening_test is not None:
            exported = _export_listening_test(results, settings.export_listening_test)
            if exported is not None:
                return exported
        mapping = (
            report_content.read_content_table(settings.content_types)
            if settings.content_types
            else None
        )
        report_content.assign_content_types(results, mapping)
        return None

    def plan(self) -> int | None:
        """Nothing to draw when the outputs are there and drawn from the same inputs."""
        self.digest = inputs_digest(self.results, self.settings.params())
        prev_outputs = _up_to_date_outputs(self.settings, self.digest)
        if prev_outputs is None:
            output_dir = self.settings.out_dir
            cli.stage_summary(
                STAGE_NAME,
                self.t0,
                f"{output_dir} is up to date with {self.settings.results_dir} "
                "(use --force to redraw)",
            )
            print(output_dir / HTML_REPORT_NAME)
            return cli.EXIT_OK
        self.prev_outputs = prev_outputs
        return None

    def work(self) -> list[work.Outcome]:
        """Every figure (drawn in this process: matplotlib)."""
        self.settings.out_dir.mkdir(parents=True, exist_ok=True)
        self.times["figures_start"] = time.perf_counter()
        self.figures, self.written_files, self.failed = _draw_figures(self.settings, self.results)
        return []

    def commit(self) -> int | None:
        """The Listen and Loss audit blocks, the two reports, run.json; stale outputs go."""
        settings, results, output_dir = self.settings, self.results, self.settings.out_dir
        t_report = time.perf_counter()
        listen = report_audio.audio_examples_blocks(
            results,
            output_dir,
            n_examples=settings.audio_examples,
            budget_mb=settings.audio_budget_mb,
        )
        audit_blocks = loss_audit.loss_audit_blocks(
            results, output_dir, audio_dir=report_audio.find_audio_dir(results), dpi=settings.dpi,
            formats=settings.format,
        )  # fmt: skip
        sections = build_report(results, self.figures, listen=listen, loss_audit=audit_blocks)
        write_text_if_changed(output_dir / TEXT_REPORT_NAME, render_text(sections))
        write_text_if_changed(output_dir / HTML_REPORT_NAME, render_html(sections))
        outputs = [p.name for p in self.written_files] + [TEXT_REPORT_NAME, HTML_REPORT_NAME]
        outputs += loss_audit.figure_names(audit_blocks, settings.format)
        for stale in set(self.prev_outputs) - {output_dir / o for o in outputs}:
            if stale.is_file() and stale.parent == output_dir:
                stale.unlink()
                logger.info("removed %s (no longer produced)", stale)
        t_fig, t_end = self.times["figures_start"], time.perf_counter()
        cli.write_run_json(
            output_dir,
            stage=STAGE_NAME,
            settings=settings,
            params=settings.params(),
            timings={
                "load": t_fig - self.t0,
                "figures": t_report - t_fig,
                "report": t_end - t_report,
            },
            extra={
                "inputs_digest": self.digest,
                "outputs": outputs,
                "failed_figures": self.failed,
                "models": {
                    m.name: {"available": m.available, "reason": m.reason} for m in results.models
                },
                "notes": results.notes,
            },
        )
        return None

    def summary(self) -> str:
        failed = self.failed
        return (
            f"{len(self.figures)} figures, {TEXT_REPORT_NAME} and {HTML_REPORT_NAME} written to "
            f"{self.settings.out_dir}" + (f"; {len(failed)} figure(s) failed" if failed else "")
        )

    def exit_status(self) -> int:
        print(self.settings.out_dir / HTML_REPORT_NAME)
        return cli.EXIT_FAILED if self.failed else cli.EXIT_OK


def _up_to_date_outputs(settings: VisualizeSettings, digest: str) -> list[Path] | None:
    """The outputs of the previous run, or None when they are all there and drawn from the
    same inputs (nothing to redraw)."""
    previous: dict[str, Any] = {}
    prev_path = settings.out_dir / RUN_JSON_NAME
    if prev_path.exists():
        try:
            previous = json.loads(prev_path.read_text(encoding="utf-8"))
        except ValueError:
            previous = {}
    prev_outputs = [settings.out_dir / p for p in previous.get("outputs", [])]
    if (
        not settings.force
        and previous.get("inputs_digest") == digest
        and prev_outputs
        and all(p.exists() for p in prev_outputs)
    ):
        return None
    return prev_outputs


def _draw_figures(
    settings: VisualizeSettings, results: StudyResults
) -> tuple[list[FigureBlock], list[Path], list[str]]:
    """Every figure of the plan in each format: the report's blocks, the files, the failures
    (one broken figure never costs the report)."""
    from perceptual_audio.report import plots  # deferred: matplotlib

    figures: list[FigureBlock] = []
    written: list[Path] = []
    failed: list[str] = []
    shown = embedded_format(settings.format)
    formats = list(dict.fromkeys([*settings.format, shown]))
    for stem, group, caption, builder in work.progress(
        figure_plan(results), desc="figures", quiet=settings.quiet, unit="figure"
    ):
        paths = [settings.out_dir / f"{stem}.{fmt}" for fmt in formats]
        try:
            plots.save_figures(builder(), paths, dpi=settings.dpi)
        except Exception as e:  # one broken figure must not cost the report
            logger.error("figure %s failed: %s: %s", paths[0], type(e).__name__, e)
            failed.append(f"{paths[0].name}: {type(e).__name__}: {e}")
            continue
        figures.append(FigureBlock(settings.out_dir / f"{stem}.{shown}", caption, group))
        written += paths
        logger.debug("wrote %s", ", ".join(str(p) for p in paths))
    return figures, written, failed


@cli.stage_entry("visualize_results.py")
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``visualize_results.py``; returns the exit status (see :mod:`cli`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    cli.setup_logging(quiet=args.quiet, verbose=args.verbose)
    try:
        return run_stage(VisualizeSettings.from_args(args))
    except PerceptualAudioError as e:
        logger.error("%s", e)
        return cli.EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
