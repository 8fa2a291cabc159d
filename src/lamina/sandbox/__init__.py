"""Execution environments: lifecycle, isolation backends, pools."""
