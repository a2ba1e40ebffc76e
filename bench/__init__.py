"""Load benchmarks of Marketing Hub (not part of the test run): `make bench` or `python bench/run.py`."""
