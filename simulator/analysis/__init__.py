"""From runs to numbers: running scenarios (replications, workers), outcomes and summaries, queue statistics, the
metric registry, confidence intervals, comparisons, sweeps and tornados, virtual trials and calibration. Never
imports output, teaching, regression or cli.
"""
