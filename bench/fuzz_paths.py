"""Path-mapper fuzz benchmark: at least 100,000 hostile recordId paths, none escapes the root.

The bar: ``parse_drive_path`` + ``resolve`` over >= 100,000 generated paths (hostile text,
structured ``drive + separators + segments`` and mutated real file paths) answer only
BadName/NoSuchFile/NoMapping or a real recording of the temporary file server; no other
exception, no path outside the root's real path, no symlink or non-file returned.

It runs the property of ``tests/unit/test_drivepaths.py`` (``check_path`` on its
``hostile_paths`` strategy and ``make_tree`` file server) through Hypothesis, in batches with
distinct seeds, spread over ``--workers`` processes (Hypothesis generation, not the mapper, is
the slow part). It stops at ``--cases`` or at ``--time-limit`` seconds with the count reached.
Run from the repository root: ``.venv/bin/python -m bench.fuzz_paths`` (or as a script).

Output ends with ``bar mapper_hostile_paths <count> >=100000 PASS|FAIL``. Exit code 1 when a
counterexample was found (each is printed), 0 otherwise (also when the count fell short).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.unit.test_drivepaths import check_path, hostile_paths, make_tree  # noqa: E402

BAR = 100_000
OUTCOMES = ("BadName", "NoSuchFile", "NoMapping", "accepted")


@dataclass
class Result:
    counts: Counter[str] = field(default_factory=Counter)
    digests: set[bytes] = field(default_factory=set)
    failures: list[tuple[str, str]] = field(default_factory=list)
    batches: int = 0


def worker(index: int, workers: int, quota: int, batch: int, deadline: float, base: int) -> Result:
    """Run batches of ``batch`` examples (seeds base+index, base+index+workers, ...)."""
    result = Result()
    with tempfile.TemporaryDirectory(prefix="ccgw-bench-paths-") as tmp:
        tree = make_tree(Path(tmp))
        done = 0
        while done < quota and time.time() < deadline:
            size = min(batch, quota - done)

            @seed(base + index + workers * result.batches)
            @settings(
                max_examples=size,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=[HealthCheck.too_slow],  # a loaded machine, not the code
            )
            @given(raw=hostile_paths)
            def run(raw: str) -> None:
                try:
                    outcome = check_path(raw, tree)
                except Exception as exc:  # the property failed: keep the counterexample
                    outcome = "failure"
                    if len(result.failures) < 20:
                        result.failures.append((raw, repr(exc)))
                result.counts[outcome] += 1
                result.digests.add(hashlib.blake2b(raw.encode("utf-8", "surrogatepass")).digest())

            before = result.counts.total()
            try:
                run()
            except Exception as exc:  # Hypothesis itself gave up (e.g. a health check)
                result.counts["failure"] += 1
                result.failures.append((f"<batch {result.batches}>", repr(exc)))
            result.batches += 1
            done += result.counts.total() - before
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=BAR, help="paths to generate in all")
    parser.add_argument("--batch", type=int, default=2_000, help="examples per Hypothesis run")
    parser.add_argument("--workers", type=int, default=0, help="processes (default: CPUs)")
    parser.add_argument("--time-limit", type=float, default=300, help="stop after this, s")
    parser.add_argument("--seed", type=int, default=0, help="first Hypothesis seed")
    args = parser.parse_args(argv)
    if args.cases < 1 or args.batch < 1 or args.workers < 0 or args.time_limit <= 0:
        parser.error("--cases and --batch must be >= 1, --workers >= 0, --time-limit > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workers = args.workers or len(os.sched_getaffinity(0)) or 1
    start = time.time()
    deadline = start + args.time_limit
    quotas = [args.cases // workers + (i < args.cases % workers) for i in range(workers)]
    print(
        f"fuzzing the drive-path mapper: {args.cases} paths, {workers} worker(s), "
        f"batches of {args.batch}, time limit {args.time_limit:g} s",
        flush=True,
    )
    total = Result()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(worker, i, workers, quota, args.batch, deadline, args.seed)
            for i, quota in enumerate(quotas)
        ]
        for future in futures:
            part = future.result()
            total.counts.update(part.counts)
            total.digests |= part.digests
            total.failures.extend(part.failures)
            total.batches += part.batches
    elapsed = time.time() - start
    count = total.counts.total()
    print(
        f"cases {count} ({len(total.digests)} distinct) in {total.batches} batches, "
        f"{elapsed:.1f} s ({count / elapsed:.0f}/s)"
    )
    print("outcomes " + "  ".join(f"{name} {total.counts[name]}" for name in OUTCOMES))
    print(f"escapes/unexpected exceptions {total.counts['failure']}")
    for raw, error in total.failures:
        print(f"counterexample {raw!r}: {error}")
    if count < args.cases:
        print(f"stopped at the time limit ({args.time_limit:g} s) after {count} cases")
    passed = count >= BAR and not total.failures
    print(f"bar mapper_hostile_paths {count} >={BAR} {'PASS' if passed else 'FAIL'}")
    return 1 if total.failures else 0


if __name__ == "__main__":
    sys.exit(main())
