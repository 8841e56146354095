"""Fault-injection tests: a loopback proxy between the stores and the real servers."""
