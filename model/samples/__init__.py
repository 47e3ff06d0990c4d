"""Sample data clipsearch generates itself, for offline training, tests and the demo: the
synthetic shapes set (`shapes`) and the demo corpus (`demo`). No torch: PIL (and, for the demo's
photographs, scikit-image) only."""
