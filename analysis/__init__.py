"""Analysis of sweep results: figures, statistics for H1-H6, the dashboard (issue 4)."""
