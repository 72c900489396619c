"""`licensing`: the operators' command line for the licensing platform."""
