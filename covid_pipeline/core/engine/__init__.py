"""A range of days: the stream, the writes, run_range and its outcome, progress."""
