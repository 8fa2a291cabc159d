"""Enforced mode's cost on an Invoke: the server CPU an IAM user's authorised call adds.

Measures, in process over a real SQLite store, what enforcement adds to the invoke path:
resolving a user's access key (against the root key's fixed pair) and deciding
`lambda:InvokeFunction` for that user (an inline policy allowing it, the function's resource
policy looked up). The signature check itself is the same work for any key, so it is not
counted. The root key's calls skip authorisation entirely.

Run with `.venv/bin/python -m bench.authorization`. Prints figures; asserts nothing.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lamina.api.authorization import PolicyAuthorizer
from lamina.arns import Account
from lamina.control.access import Authority
from lamina.control.iam import IamService
from lamina.identity.sigv4 import Signer, SigV4Verifier
from lamina.model.iam import USER, InlinePolicy
from lamina.store.sqlite import open_stores

ACCOUNT = Account("000000000000", "us-east-1")
FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:bench"
ROUNDS = 20_000


def per_call_us(call: Callable[[], object], rounds: int = ROUNDS) -> float:
    """The best of five runs, in microseconds per call (CPU time)."""
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(rounds):
            call()
        best = min(best, time.process_time() - start)
    return best / rounds * 1e6


def measure(data_dir: Path, rounds: int = ROUNDS) -> dict[str, float]:
    """Microseconds per call of each part enforcement adds to an Invoke."""
    stores = open_stores(data_dir)
    iam = IamService(stores.iam, ACCOUNT)
    iam.create_user("bench")
    key = iam.create_access_key("bench")
    stores.iam.put_inline_policy(
        InlinePolicy(
            USER,
            "bench",
            "invoke",
            json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"},
                        {"Effect": "Deny", "Action": "lambda:DeleteFunction", "Resource": "*"},
                    ],
                }
            ),
        )
    )
    authorizer = PolicyAuthorizer(Authority(iam, stores.functions), iam, ACCOUNT)
    verifier = SigV4Verifier("AKIAROOTBENCH", "root-secret").with_iam(
        stores.iam, ACCOUNT.account_id, authorizer
    )
    caller = verifier._known(key.access_key_id, None).caller
    signer = Signer(caller, "us-east-1")
    params = {"FunctionName": "bench", "Payload": b"{}"}

    def resolve_user_key() -> object:
        return verifier._known(key.access_key_id, None)

    def resolve_root_key() -> object:
        return verifier._known("AKIAROOTBENCH", None)

    def authorise() -> None:
        authorizer.authorize("lambda", "Invoke", params, signer, "127.0.0.1")

    authorise()  # the first call compiles and caches
    user_key, root_key = (
        per_call_us(resolve_user_key, rounds),
        per_call_us(resolve_root_key, rounds),
    )
    decided = per_call_us(authorise, rounds)
    return {
        "key lookup (user) us": user_key,
        "key lookup (root) us": root_key,
        "authorise Invoke us": decided,
        "added over the root key us": user_key - root_key + decided,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        figures = measure(Path(directory) / "data")
    for name, value in figures.items():
        print(f"{name:>30}: {value:7.2f}")


if __name__ == "__main__":
    main()
