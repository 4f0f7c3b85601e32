"""The analyzer on healthy runs and on every fault case derived from one (docs/scenarios.md).

    python benchmarks/analyzer_cases.py --healthy NAME=RUN_DIR [...] --faults-from RUN_DIR \\
        --output-dir DIR

Each healthy run is analysed as it is. The fault cases (analysis.faults: input faults injected
into the data the run saw, model faults into its network output or recorded flags) are built from
``--faults-from`` without training, its dataset re-simulated from the recorded configuration
(deterministic for fixed seeds). Prints one verdict line per run and a table of the data
consistency numbers; writes DIR/cases/<case>/ and DIR/analysis*/bias_summary.*.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ptychotrace.analysis import analyze_runs, parse_scenario_args
from ptychotrace.analysis.faults import (
    EXPECTED_STAGE,
    INPUT_FAULTS,
    MODEL_FAULTS,
    build_case,
    healthy_pieces,
)
from ptychotrace.config import RunConfig
from ptychotrace.simulate import simulate


def _g(x) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _row(name: str, run: Path, verdict: dict) -> str:
    rec = json.loads((run / "consistency" / "consistency.json").read_text())
    f, n, t = rec["final"] or {}, rec["network_only"] or {}, rec["truth"] or {}
    return (f"| {name} | {_g(t.get('normalised_median'))} | {_g(t.get('z_aggregate'))} | "
            f"{_g(f.get('normalised_median'))} | {_g(f.get('explained_vs_flat'))} | "
            f"{_g(n.get('normalised_median'))} | {verdict['label']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--healthy", action="append", default=[], metavar="NAME=DIR")
    ap.add_argument("--faults-from", required=True, type=Path)
    ap.add_argument("--output-dir", required=True, type=Path)
    a = ap.parse_args()
    out = a.output_dir
    out.mkdir(parents=True, exist_ok=True)
    header = ["| run | truth D/E median | truth z | final D/E median | final explained vs flat | "
              "network-only D/E median | verdict |", "|---|---|---|---|---|---|---|"]
    rows, lines = [], []
    healthy = parse_scenario_args(a.healthy) if a.healthy else {}
    if healthy:
        s = analyze_runs(healthy, out / "analysis_healthy", force=True)
        for name, run in healthy.items():
            rows.append(_row(name, run, s["verdicts"][name]))
            lines.append(s["verdict_lines"][name])
    md = json.loads((a.faults_from / "run_metadata.json").read_text())
    cfg = RunConfig.model_validate(md["config"])
    ds, _ = simulate(cfg.simulation, scenario=cfg.scenario)
    h = healthy_pieces(a.faults_from, ds)
    cases = {}
    for case in INPUT_FAULTS + MODEL_FAULTS:
        cases[case] = build_case(h, case, out / "cases" / case)
    s = analyze_runs(cases, out / "analysis_faults", force=True)
    for case, run in cases.items():
        v = s["verdicts"][case]
        rows.append(_row(case, run, v))
        ok = "ok" if v["stage"] == EXPECTED_STAGE[case] else f"EXPECTED {EXPECTED_STAGE[case]}"
        lines.append(f"{s['verdict_lines'][case]} [{ok}]")
    print("\n".join(header + rows))
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
