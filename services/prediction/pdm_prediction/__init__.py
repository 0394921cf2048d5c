"""The prediction service: failure probability, RUL and health per asset, on request."""
