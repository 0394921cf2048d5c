"""The embedded stack (tansu broker, PostgreSQL, MLflow) behind `pdm stack` and the tests.

Import the submodules directly (`pdm_tools.stack.processes`, `pdm_tools.stack.stack`);
this package stays empty so `pdm --help` does not pay for their imports.
"""
