"""Reports a person looks at: one self-contained HTML page (and a Markdown twin) per directory.

``build_report(DIR)`` recognises three kinds of directory by the file that marks them:

    run_metadata.json   a run directory (telemetry.md)        -> RUN_SECTIONS
    sweep_summary.json  a sweep directory                     -> SWEEP_SECTIONS
    bias_summary.json   an analyze directory (the analyzer)   -> ANALYZE_SECTIONS

(checked in that order; the first found wins). It reads the directory, builds a
:class:`~ptychotrace.report.html.Document` (this module decides *what* is shown), and writes
``report.html`` (images embedded as base64, inline CSS, no script) and ``report.md`` (links to the
PNG files by relative path) next to each other. Figures the report has to draw itself (training
curves, FRC curves, images rendered from ``.npy`` when the run's PNG is missing) are written to
``<stem>_files/`` beside the report so the Markdown twin can link them.

Modules: common.py (kinds, formatting, reading a directory), run_page.py and run_metrics.py (a
run's sections), sweep_page.py, analyze_page.py, figures.py (the one image writer and the
curves), html.py (the document model and its HTML / Markdown rendering).

Every file is read once and validated against its typed record (records/: RunMetadata,
ComparisonRecord, IntensityStats, TrainingHistory / HistorySummary, SweepSummary,
records.bias.AnalysisSummary); sections get attributes, never ``.get`` chains, so a producer that
renames or drops a required field fails loudly instead of rendering "n/a". Only the marker file
is required: when it does not validate the report is refused (:class:`ReportInputError` naming
the file and the fields). Any other file that is missing turns the part of the report that needs
it into "not available (file X missing)"; one that is not JSON or does not match its record into
a red "not available (X: not a valid <Record>: <field>: <why>)". Optional blocks (no ground
truth, no geometry, no training labels) are ``None`` by type and say "not available (no <block>
block in <file>)". A directory of none of the three kinds is a :class:`ReportInputError` naming
the marker files. An existing report is never replaced unless ``force``.
"""

from __future__ import annotations

from pathlib import Path

from ..telemetry.writers import write_bytes, write_text
from .analyze_page import _analyze_document
from .common import (
    ANALYZE_SECTIONS,
    FAILURE_SECTION,
    MARKERS,
    RUN_SECTIONS,
    SWEEP_SECTIONS,
    ReportInputError,
    ReportResult,
    _Dir,
    detect_kind,
    fmt,
    report_paths,
)
from .html import Document, iter_figures, render_html, render_markdown
from .run_page import _run_document
from .sweep_page import _sweep_document

__all__ = ["build_report", "build_document", "detect_kind", "report_paths", "ReportInputError",
           "ReportResult", "MARKERS", "RUN_SECTIONS", "SWEEP_SECTIONS", "ANALYZE_SECTIONS",
           "FAILURE_SECTION", "fmt"]


# --------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------
_BUILDERS = {"run": _run_document, "sweep": _sweep_document, "analyze": _analyze_document}


def build_document(directory: str | Path, kind: str | None = None) -> Document:
    """The report document of ``directory`` (kind detected when not given); writes nothing."""
    root = Path(directory)
    kind = kind or detect_kind(root)
    return _BUILDERS[kind](_Dir(root))


def build_report(directory: str | Path, output: str | Path | None = None, *,
                 force: bool = False) -> ReportResult:
    """Write the HTML report and its Markdown twin for a run, sweep or analyze directory.

    ``output``: the HTML path (default DIR/report.html); the Markdown twin takes the same stem
    with ``.md`` and generated figures go to ``<stem>_files/``. An existing report is refused
    (``FileExistsError``) unless ``force``; with ``force`` it is replaced and generated figures
    that are no longer part of it are removed. Everything is read before anything is written.
    """
    root = Path(directory)
    kind = detect_kind(root)
    html_path, md_path, fig_dir = report_paths(root, output)
    existing = [p for p in (html_path, md_path, fig_dir) if p.exists()]
    if existing and not force:
        raise FileExistsError(f"{', '.join(map(str, existing))} already exist(s); pass --force to "
                              "replace the report, or choose another --output")
    doc = build_document(root, kind)
    written: list[Path] = []
    for section in doc.sections:
        for fig in iter_figures(section.blocks):
            if fig.path is None:
                fig.path = fig_dir / (fig.name or f"figure_{len(written) + 1}.png")
                write_bytes(fig.path, fig.data)
                written.append(fig.path)
    if fig_dir.is_dir():  # (force) figures of an earlier report that this one no longer has
        for stale in fig_dir.glob("*.png"):
            if stale not in written:
                stale.unlink()
        if not any(fig_dir.iterdir()):
            fig_dir.rmdir()
    write_text(md_path, render_markdown(doc, md_path.parent))
    write_text(html_path, render_html(doc))
    return ReportResult(kind, html_path, md_path, tuple(written))
