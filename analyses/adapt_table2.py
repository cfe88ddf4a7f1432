"""PrefixLM vs causalLM adaptation (Table 2 analog of Ding et al.), run as N parallel parts.

A thin driver over ``icl-interp adapt-table``: starts ``--parts`` processes on one output
folder (``--part i/N``, one thread each by default: on a busy 2-core machine two one-thread
processes beat one two-thread process), waits for them, and prints the report that part 0
writes. Rerunning the same command resumes every part.

    .venv/bin/python analyses/adapt_table2.py --preset cpu --parts 2 --data-dir ../shared/data --out runs/adapt_cpu
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from icl_interp.cli import exit_code


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--parts", type=int, default=2, help="parallel processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="runs/adapt_cpu")
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument(
        "extra", nargs=argparse.REMAINDER, help="further adapt-table options (after --)"
    )
    return parser.parse_args(argv)


def part_command(args: argparse.Namespace, part: int) -> list[str]:
    command = [
        sys.executable, "-m", "icl_interp", "adapt-table", "--preset", args.preset,
        "--out", args.out, "--threads", str(args.threads), "--part", f"{part}/{args.parts}",
    ]  # fmt: skip
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    if args.max_minutes:
        command += ["--max-minutes", str(args.max_minutes)]
    return command + [a for a in args.extra if a != "--"]


def main(args: argparse.Namespace) -> int:
    from icl_interp.errors import UserError

    if args.parts < 1:
        raise UserError(f"--parts must be >= 1, got {args.parts}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    processes = []
    for part in range(args.parts):
        log = open(Path(args.out) / f"part{part}.log", "a", encoding="utf-8")  # noqa: SIM115
        processes.append(
            (
                subprocess.Popen(
                    part_command(args, part), stdout=log, stderr=subprocess.STDOUT, env=env
                ),
                log,
            )
        )
    codes = []
    for process, log in processes:
        codes.append(process.wait())
        log.close()
    report = Path(args.out) / "report.md"
    if report.exists() and all(code == 0 for code in codes):
        print(report.read_text(encoding="utf-8"))
    else:
        print(f"exit codes {codes}; see {args.out}/part*.log; rerun the same command to resume")
    return max(codes)


def _main(argv: Sequence[str] | None = None) -> int:
    return exit_code("adapt_table2.py", lambda: main(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(_main())
