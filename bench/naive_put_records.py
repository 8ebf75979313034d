"""The baseline: read a file, boto3 put_records 500 lines a call, random keys, failed records sent again.

What someone would write first (issue 16): nothing else — no aggregation, no
concurrency, no backoff. Random keys are 128 random bits in hex (cheap: the
baseline's cost is boto3's, not its key generator's).

usage: naive_put_records.py [--pause] STREAM ENDPOINT FILE...

With ``--pause`` (bench/tailer.py's steady-state measurement) it ships the first
file, prints ``warm``, waits for a line on stdin, ships the others, prints
``done`` and waits again: the caller reads this process's CPU at both points, so
start-up (imports, client creation, the first call) is outside the figure.
"""

import random
import sys

import boto3

args = sys.argv[1:]
pause = args[:1] == ["--pause"]
if pause:
    args = args[1:]
stream, endpoint, files = args[0], args[1], args[2:]
client = boto3.client("kinesis", endpoint_url=endpoint)


def put(batch: list[dict]) -> None:
    while batch:
        result = client.put_records(StreamName=stream, Records=batch)
        if not result["FailedRecordCount"]:
            return
        batch = [record for record, answer in zip(batch, result["Records"], strict=True) if answer.get("ErrorCode")]


def ship(path: str) -> None:
    batch = []
    with open(path, "rb") as f:
        for line in f:
            batch.append({"Data": line, "PartitionKey": f"{random.getrandbits(128):032x}"})
            if len(batch) == 500:
                put(batch)
                batch = []
    put(batch)


def wait(word: str) -> None:
    print(word, flush=True)
    sys.stdin.readline()


for n, path in enumerate(files):
    ship(path)
    if pause and n == 0:
        wait("warm")
if pause:
    wait("done")
