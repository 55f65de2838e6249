"""The pipeline's core: fetch, transform, write. It knows nothing about Dagster."""
