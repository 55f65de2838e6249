"""Making the lake queryable: Glue partitions, projection, crawler, Athena, DuckDB."""
