"""Benchmarks of issue 5 (latency, footprint) and issue 7 (soak); see BENCHMARKS.md."""
