"""Evaluation on the test split."""
