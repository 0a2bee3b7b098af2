"""The command modules of the ``deepfusion`` command line, one per sub-command."""
