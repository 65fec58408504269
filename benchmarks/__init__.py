"""On-demand benchmarks: ``python -m benchmarks.<name>``; each times our code and its baseline in the same run."""
