"""Benchmarks (not tests): real server and worker processes; see bench/README.md."""
