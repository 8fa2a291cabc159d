"""The physical floor: the least a Python platform that keeps warm processes can cost."""
