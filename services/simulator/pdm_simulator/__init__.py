"""Fleet simulator: acts as IoT gateways for simulated machines and publishes ground truth."""
