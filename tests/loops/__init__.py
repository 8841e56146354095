"""Stores and managers used from several event loops of one process."""
