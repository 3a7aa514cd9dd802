"""Placeholder: this lesson's exercise is being written."""
