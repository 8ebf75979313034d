"""The `spoolship` command: joins the receiver and the tailer into one tool."""
