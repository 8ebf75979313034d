"""Follow the spool, ship lines to Kinesis, checkpoint, delete only what is acknowledged."""
