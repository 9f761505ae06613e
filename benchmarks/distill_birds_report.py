"""The bird study's one report from the runs recorded in benchmarks/results: each
`distill_<method>_birds_ipc<N>_results.json` becomes a variant of a study workdir (the whole
split's runs, `distill_full_birds*_results.json`, one `full` row), and
`bird_jax.distill.study.write_report` writes the table, CSV and plots of it.

  PYTHONPATH=. python benchmarks/distill_birds_report.py \
      --report_dir=benchmarks/results/distill_birds_report

The runs were made over several sessions with different budgets: the table's epochs column and
BENCHMARKS.md say which. No image grids: the sets themselves are not kept in the repository.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from absl import app, flags

from bird_jax.distill import defaults, study
from bird_jax.distill.run import RESULTS_FILE

RESULTS = Path(__file__).parent / "results"
PATTERN = re.compile(r"distill_(?P<method>\w+?)_birds_ipc(?P<ipc>\d+)_results\.json")

flags.DEFINE_string("report_dir", str(RESULTS / "distill_birds_report"), "Where the report goes.")


def variant_results(results_dir: Path) -> dict[str, dict]:
    """{variant: results.json} of every recorded birds run, in the study's method order, the
    whole split's runs merged into one `full` row last."""
    found = {}
    for path in results_dir.glob("distill_*_birds_ipc*_results.json"):
        match = PATTERN.fullmatch(path.name)
        if match and match["method"] in defaults.METHODS:  # not distill_full_birds_*
            found[(match["method"], int(match["ipc"]))] = json.loads(path.read_text())
    order = sorted(found, key=lambda key: (study.METHOD_ORDER.index(key[0]), key[1]))
    variants = {f"{method}_ipc{ipc}": found[(method, ipc)] for method, ipc in order}
    full_runs = [json.loads(p.read_text()) for p in sorted(results_dir.glob("distill_full_birds*"))]
    if full_runs:
        variants[study.FULL] = {
            **full_runs[0],
            "evaluations": [e for run in full_runs for e in run["evaluations"]],
        }
    return variants


def main(argv: list[str]) -> None:
    del argv
    variants = variant_results(RESULTS)
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        for name, results in variants.items():
            (workdir / name).mkdir()
            (workdir / name / RESULTS_FILE).write_text(json.dumps(results))
        rows = [study.read_row(name, workdir / name) for name in variants]
        for path in study.write_report(rows, Path(flags.FLAGS.report_dir), workdir):
            print(path)
    print(study.markdown_table(rows))


if __name__ == "__main__":
    app.run(main)
