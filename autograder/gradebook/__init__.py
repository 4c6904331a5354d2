"""The course's gradebook: autograder results kept in nbgrader's own database.

`gradebook.store.record_autograde` writes a graded submission (an
`autograder.grading.run.GradeResult`) into nbgrader's gradebook as the auto scores of the
week notebook's `part-<part>` grade cells, scaled to each cell's points, with the failing
tests in words as a comment; regrades replace auto scores and never touch the manual scores
and comments a grader entered in formgrader, so nbgrader's totals, formgrader and
`nbgrader export` all agree. `gradebook.table` turns the database into one row per student
(and a Canvas-style CSV), and `gradebook.report` into a self-contained HTML report for
instructors: score distributions, the most failed tests, late and missing submissions.
"""
