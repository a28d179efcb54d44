"""Distributed engines for when one machine is not enough (issue 9).

:mod:`sandbox.run.engines.spark` runs the admitted, evidence-rewritten SQL of an
aggregate job on a Spark session instead of the isolated DuckDB worker;
:mod:`sandbox.run.engines.ray_pool` maps PSI set-up shards and HE group-sum shares
onto Ray tasks instead of local processes. Both are optional: ``pyspark`` and
``ray`` come with the ``spark`` and ``ray`` extras, and each is imported only
when its setting asks for it.
"""
