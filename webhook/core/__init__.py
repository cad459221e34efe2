"""The pure decision: annotations, catalog, policy, sizing, inference, decision, mutation,
patch. No I/O beyond reading the package's own data files; no Flask, gunicorn, Prometheus or
Kubernetes client (the layer contract in pyproject.toml says so, and `make test` checks it)."""
