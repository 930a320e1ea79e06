"""The paper's experiments (issue 23), one runner: ``python -m experiments.paper
--config=configs/paper/<name>.py``; ``reports/paper.md`` collects their results."""
