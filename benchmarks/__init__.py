"""Benchmarks of the course's training speed (``make bench``); see benchmarks/run.py."""
