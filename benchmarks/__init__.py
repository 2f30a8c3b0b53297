"""Benchmarks behind `make bench`: each prints a table and writes JSON under bench-results/ (medians, one run)."""
