"""Training pipelines alternating avatar and pose optimisation."""
