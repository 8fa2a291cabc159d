"""Who is calling: SigV4 verification (and, later, IAM principals and policy evaluation)."""
