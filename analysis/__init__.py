"""Analysis of sweep results: settings, statistics for H1-H6 with the seed as the unit, figures,
the dashboard, and the simulations that calibrate the statistics."""
