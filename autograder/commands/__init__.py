"""What each `course` subcommand does: its orchestration and what it prints. `autograder/cli.py`
only parses the arguments and calls these."""
