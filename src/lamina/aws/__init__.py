"""Clients for AWS services Lamina talks to (S3 for code; later SQS, SNS, EventBridge)."""
