"""Lamina: a self-hostable serverless platform that speaks AWS Lambda's APIs."""

__version__ = "0.1.0"
