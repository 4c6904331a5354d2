"""How tests reach a submission: the pytest plugin (`sub` fixture, markers, deadlines,
outcomes as data) and its two transports, remote (a sandboxed worker over the wire) and
in-process (self-checks). What suites import to compare and generate lives in `autograder.kit`."""
