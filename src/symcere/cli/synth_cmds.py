"""``symcere data synth``: the built-in dataset generator, registered into the ``data`` command group."""

from symcere.data.synthetic import register_data

__all__ = ["register_data"]
