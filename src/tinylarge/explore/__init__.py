"""Design-space exploration: ``tinylarge sweep`` runs a grid of configs (:mod:`.grid`) in
parallel with resume (:mod:`.runner`), gathers every summary into one table with seeds
aggregated (:mod:`.table`), and finds the Pareto fronts and the recommendation per device
profile and link (:mod:`.pareto`, pure functions). The report is
:mod:`tinylarge.results.sweep_report`. See docs/explore.md."""
