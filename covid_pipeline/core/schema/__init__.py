"""Records to Arrow tables: decoding, the documented schema, the data checks."""
