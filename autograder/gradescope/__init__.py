"""Gradescope: an autograder zip built from a week's hidden and public suites and the same engine.

`bundle.build_autograder_zip` writes what Gradescope's "zip file upload" takes: `setup.sh`
(installs the course's locked environment), `run_autograder` (grades
`/autograder/submission/*.ipynb` in the sandboxed worker and writes
`/autograder/results/results.json` through `run.py`), and the course files grading needs,
never a reference or a mutant. `results.py` writes Gradescope's results format.
"""
