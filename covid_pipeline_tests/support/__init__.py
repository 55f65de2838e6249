"""What the tests share: the servers they start, and helpers. conftest.py holds only fixtures."""
