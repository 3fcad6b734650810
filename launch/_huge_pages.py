"""Restarts the launcher with glibc's malloc on transparent huge pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1).

XLA:CPU takes each step's temporary buffers from malloc, and glibc serves blocks above its mmap
threshold (32 MiB at most) with fresh pages that it returns to the kernel on free: every step
page-faults its temporaries anew, 4 KiB at a time, and the kernel zeroes each page. The RuCoLA
FastText-baseline step (a 130,706 x 128 table) took 40,000 page faults a step, 39% of the run's
CPU time in the kernel. With huge pages the same run takes 32x fewer faults and trains 1.5x faster,
with identical numbers (BENCHMARKS.md, "Fine-tuning speed"). The loader reads GLIBC_TUNABLES only
when a process starts, hence the restart (os.execv: the same process id, arguments and
interpreter options), done before anything heavy is imported. A GLIBC_TUNABLES the user set is
kept; JAXLM_HUGE_PAGES=0 turns this off. Elsewhere than Linux nothing happens; a glibc older than
2.35 ignores the tunable, and so does a kernel with transparent huge pages off.
"""

import os
import sys

if (sys.platform.startswith("linux") and "GLIBC_TUNABLES" not in os.environ
    and os.environ.get("JAXLM_HUGE_PAGES", "1") != "0"):
  os.environ["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=1"
  os.execv(sys.executable, sys.orig_argv)
