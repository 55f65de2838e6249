"""Files: the key layout, Parquet bytes, S3 and local stores, a day's file, the scan."""
