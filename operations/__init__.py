"""What an operator runs Docket with: /healthz, /readyz, /metrics, request ids and the access log, backup and
restore."""
