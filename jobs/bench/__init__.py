"""Benchmarks: CPU throughput and search (bench), peak memory (memory), one GPU (gpu)."""
