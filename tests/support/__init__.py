"""What the tests and the benchmarks share, importable as ``tests.support`` (the
repository root on sys.path: pytest's rootdir, or ``python -m bench.X`` run from it).

- fixtures: the captured AdmissionReviews, test pods, the Pod schema validator, the
  real GPUs' MIG tables.
- server: a real `gpu-rightsizer serve` in a subprocess (LiveServer, RunningServer), and
  the mounted-volume layout the kubelet makes for ConfigMaps and Secrets.
- served: a LiveServer with what the reliability tests and bench/soak.py look at inside
  it (worker pids, RSS, client ports).
- loadgen: a steady-rate admission load that behaves like kube-apiserver's client.
- hostile: the hostile request corpus (cases.yaml, bodies/) and its expected answers.
- layouts: an independent checker of MIG layouts, from the catalog's placement data.
- golden: writes tests/fixtures/golden/*.response.json (``python -m tests.support.golden``).
"""
