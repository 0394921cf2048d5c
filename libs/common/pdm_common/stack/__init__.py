"""The embedded stack (tansu broker, PostgreSQL, MLflow) behind `pdm stack` and the tests.

Import the submodules directly (`pdm_common.stack.processes`, `pdm_common.stack.stack`);
this package stays empty so `pdm --help` does not pay for their imports.
"""
