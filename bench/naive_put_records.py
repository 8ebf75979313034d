"""The baseline: read a file, call boto3 put_records with 500 lines per call. Nothing else.

usage: naive_put_records.py STREAM ENDPOINT FILE...
"""

import sys

import boto3

stream, endpoint, files = sys.argv[1], sys.argv[2], sys.argv[3:]
client = boto3.client("kinesis", endpoint_url=endpoint)
batch = []
n = 0
for path in files:
    with open(path, "rb") as f:
        for line in f:
            batch.append({"Data": line, "PartitionKey": str(n)})
            n += 1
            if len(batch) == 500:
                result = client.put_records(StreamName=stream, Records=batch)
                assert result["FailedRecordCount"] == 0
                batch = []
if batch:
    client.put_records(StreamName=stream, Records=batch)
