"""Benchmarks: the kiosk side by side with the usual way of doing the same."""
