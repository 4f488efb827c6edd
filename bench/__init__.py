"""The benchmark harness of issue 7: `python -m bench` measures Forgeyard against the tools people use instead."""
