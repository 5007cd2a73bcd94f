"""Finished runs for people: the table in its formats, the HTML page, comparisons and charts;
runs are read through results/document.py, never through string keys."""
