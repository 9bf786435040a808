"""``semheat bench``: the performance figures, each measured side by side in one run.

- :mod:`.suite` — the figures of ``semheat bench`` (ratios against the floor each path pays,
  command latencies, first run, Ray);
- :mod:`.scale` — ``semheat bench --scale N``: an analysis of N synthetic inputs (up to 1M),
  its memory, and opening the bundle it leaves as a user would.

Not imported by anything but the command line and ``benchmarks/``.
"""
