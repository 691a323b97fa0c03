"""Developer tooling around icnd: a local cluster of real daemons and the ``make demo`` job.

Not part of the daemon: icn_dev may import icn_node, icn_node never imports icn_dev.
"""
