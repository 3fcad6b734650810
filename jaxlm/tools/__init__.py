"""Tools over trained runs: generation, reports, plots, benchmarks and the comparison grid."""
