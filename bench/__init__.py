"""Benchmarks of movierec (``make bench``): they print figures and assert nothing."""
