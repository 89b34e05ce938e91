"""Benchmark harness for reward designs in fine-tuning."""

# Part of every run's identity: bump it when a change alters results, so old records are not reused.
__version__ = "0.1.0"
