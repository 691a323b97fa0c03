"""icnctl: the command line of icnd."""
