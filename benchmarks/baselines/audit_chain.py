"""Baseline: check a hash-chained JSON-lines audit log the way a user writes it in Python.

Each line is a JSON object whose ``hash`` is the SHA-256 of the canonical JSON of its other
fields (``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``) and whose
``prev_hash`` is the previous line's ``hash`` ("0" * 64 for the first; ``seq`` counts from
0). The script parses every line, re-serialises it to re-hash it, checks the links, and
compares the last record with ``head.json`` beside the log.

Usage:
    python benchmarks/baselines/audit_chain.py FOLDER
Prints "N records, chain intact", or the first bad record and exits 1.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path


def main(folder: Path) -> int:
    prev, count, last_hash = "0" * 64, 0, None
    with open(folder / "audit.jsonl", encoding="utf-8") as log:
        for number, line in enumerate(log, 1):
            record = json.loads(line)
            claimed = record.pop("hash")
            body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            if hashlib.sha256(body.encode("utf-8")).hexdigest() != claimed:
                print(f"record {record['seq']} (line {number}) was edited")
                return 1
            if record["seq"] != count or record["prev_hash"] != prev:
                print(f"chain broken at line {number}: record {record['seq']}, expected {count}")
                return 1
            prev, count, last_hash = claimed, count + 1, claimed
    head = json.loads((folder / "head.json").read_text())
    if head["seq"] != count - 1 or head["hash"] != last_hash:
        print(f"head marker names record {head['seq']}, the log ends at {count - 1}")
        return 1
    print(f"{count} records, chain intact")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
