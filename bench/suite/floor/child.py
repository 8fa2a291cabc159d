"""A warm floor child: imports one handler, then answers one JSON line per JSON line.

Usage: python child.py CODE_DIR MODULE. Runs on the functions' interpreter (3.9+).
"""

import importlib
import json
import sys

sys.path.insert(0, sys.argv[1])
handler = importlib.import_module(sys.argv[2]).handler
answers = sys.stdout.buffer
for line in sys.stdin.buffer:
    answers.write(json.dumps(handler(json.loads(line), None)).encode() + b"\n")
    answers.flush()
