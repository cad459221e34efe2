"""The webhook as a server: the Flask app, the policy holder, hot reload of the policy and
the certificate, metrics, logs, the gunicorn worker and configuration, settings."""
