"""What every scenario runs inside: the command line, registry, results, report, machine,
CPU accounting, checks, and the servers and databases a run starts."""
