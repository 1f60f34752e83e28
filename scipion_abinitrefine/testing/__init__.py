"""Test oracles and test-only data sources, shared by the test suite and ``bench/``: numpy reference kernels
(``kernels_ref``), accuracy metrics against a ground truth (``metrics``) and in-memory particles
(``sources``). The engine never imports them."""
