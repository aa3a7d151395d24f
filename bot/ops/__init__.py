"""Operating Stemme on a municipality's servers: configuration check, backup and restore,
readiness (``health``), Prometheus metrics (``metrics``), redacted logs (``logs``) and the
request-body deadline (``limits``)."""
