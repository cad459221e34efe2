"""Certificates: the self-signed CA and serving certificate (bundle), and installing them in a
cluster (install, which uses the Kubernetes client)."""
