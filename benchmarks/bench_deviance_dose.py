"""Data consistency of healthy trained runs at every dose (issue #14): final D/E median per dose
with the default refinement (50 steps) and with the refinement run to its photon hold-out stop.

    python benchmarks/bench_deviance_dose.py --output benchmarks/results/deviance_dose.json

Tiny gs1_ideal (the fault suite's configuration: N 32, 96 px object, 48 patterns per split,
1 epoch), one real run per (dose, refinement), then the consistency record the runner writes
(consistency/consistency.json): the truth's and the final reconstruction's normalised deviance
D/E (1 = explained to shot noise), and the amplitude SSIM of the evaluated region.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, record_result  # noqa: E402
from ptychotrace.config import resolve_scenario  # noqa: E402
from ptychotrace.evaluate.consistency_record import load_consistency  # noqa: E402
from ptychotrace.scenarios.runner import RunRequest, run_scenario  # noqa: E402
from ptychotrace.simulate import simulate  # noqa: E402

TINY = {"simulation.N": 32, "simulation.object_size": 96, "simulation.base_total_images": 48,
        "simulation.buffer": 8.0, "grouping.group_count": 64, "training.nepochs": 1,
        "training.batch_size": 8, "inference.stitch_window": 12}
#: name: inference overrides (the hold-out stop stays on in both)
REFINEMENTS = {"default_50_steps": {}, "to_holdout_stop": {"inference.refine_steps": 1500}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--doses", type=float, nargs="+",
                    default=[1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9])
    ap.add_argument("--output", default=str(Path(__file__).resolve().parent / "results" /
                                            "deviance_dose.json"))
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_deviance_"))
    rows = []
    for dose in args.doses:
        for name, over in REFINEMENTS.items():
            cfg, _, _ = resolve_scenario("gs1_ideal", {**TINY, "simulation.nphotons": dose,
                                                       **over}, use_profile=False)
            ds, record = simulate(cfg.simulation, scenario="gs1_ideal")
            out = work / f"{dose:g}_{name}"
            t0 = time.perf_counter()
            run_scenario(RunRequest(config=cfg, output_dir=out, progress=False, dataset=ds,
                                    dataset_record=record))
            rec = load_consistency(out)
            cmp = json.loads((out / "comparison_metrics.json").read_text())
            stats = json.loads((out / "inference_outputs" / "stats.json").read_text())
            refine = stats["prediction"]["steps"]["refine"]
            rows.append({"photons_per_pattern": dose, "refinement": name,
                         "refine_steps_cap": cfg.inference.refine_steps,
                         "refine_steps_run": refine.get("steps"),
                         "refine_stop_reason": refine.get("stop_reason"),
                         "truth_normalised_median": rec.truth.normalised_median,
                         "final_normalised_median": rec.final.normalised_median,
                         "final_explained_vs_flat": rec.final.explained_vs_flat,
                         "amplitude_ssim": cmp["amplitude"]["ssim"],
                         "run_seconds": time.perf_counter() - t0})
            r = rows[-1]
            print(f"{dose:g} {name}: truth D/E {r['truth_normalised_median']:.3f}, final D/E "
                  f"{r['final_normalised_median']:.3f}, SSIM {r['amplitude_ssim']:.3f}", flush=True)
    record_result({"benchmark": "deviance_dose", "command": " ".join(sys.argv),
                   "configuration": TINY, "rows": rows, "machine": describe_machine()},
                  args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
