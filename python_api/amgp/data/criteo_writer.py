"""The built-in synthetic data written as a time-ordered Criteo-format text file: `days` days of
`rows_per_day` lines, day k labelled by the teacher drifted k times (amgp.data.synthetic), oldest first.
A file with a known drift, to try the file path (--data-generation dataset, the recurring stage's
latest fraction) where no real click log is at hand:

    python -m amgp.data.criteo_writer days.txt --days 4 --rows-per-day 50000
"""
import argparse

import torch

from amgp_kernels.checks import check_int

from .synthetic import SyntheticCTR
from .tasks import TASKS, teacher_settings


def criteo_lines(batch):
    """One Criteo line per row: label, 13 counts (the dense features are log(1 + count)), 26 hex ids."""
    counts = torch.expm1(batch.dense.double()).round().clamp_(min=0).long().tolist()
    for label, row_counts, ids in zip(batch.label.long().tolist(), counts, batch.sparse.tolist()):
        yield "\t".join([str(label), *map(str, row_counts), *(format(i, "x") for i in ids)]) + "\n"


def write_synthetic_days(path, days=4, rows_per_day=50_000, drift=0.3, seed=0, task="default"):
    """Write the file (see the module docstring); returns the number of lines written."""
    check_int(days, "days", minimum=1)
    check_int(rows_per_day, "rows_per_day", minimum=1)
    with open(path, "w") as out:
        for day in range(days):
            data = SyntheticCTR(seed=seed, batch_size=rows_per_day, num_batches=1, num_test_batches=1, day=day,
                                drift=drift, **teacher_settings(task))
            out.writelines(criteo_lines(data.train_batch(0)))
    return days * rows_per_day


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m amgp.data.criteo_writer", description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--days", type=int, default=4, help="days, oldest first (default %(default)s)")
    parser.add_argument("--rows-per-day", type=int, default=50_000, help="lines per day (default %(default)s)")
    parser.add_argument("--drift", type=float, default=0.3, help="the teacher's drift per day (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="the samples' seed (default %(default)s)")
    parser.add_argument("--synthetic-task", choices=TASKS, default="default", help="the teacher (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        lines = write_synthetic_days(args.path, args.days, args.rows_per_day, args.drift, args.seed,
                                     args.synthetic_task)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    print(f"wrote {lines} lines ({args.days} days of {args.rows_per_day}) to {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
