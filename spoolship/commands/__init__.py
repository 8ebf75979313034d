"""One module per `spoolship` sub-command."""
