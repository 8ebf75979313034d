"""Flask + waitress HTTP ingest: validate, append to the spool, answer fast."""
