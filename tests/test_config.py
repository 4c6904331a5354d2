"""course.yaml: the repository's file loads, and every invalid file is reported with its path and key."""

from __future__ import annotations

import copy
from pathlib import Path

import pydantic
import pytest
import yaml

from autograder.config import Course, CourseConfigError, Week, load_course

COURSE_YAML = Path(__file__).resolve().parents[1] / "course.yaml"
WEEK_IDS = ([f"m1w{i:02d}" for i in range(1, 5)] + [f"m2w{i:02d}" for i in range(1, 5)]
            + [f"m3w{i:02d}" for i in range(1, 22)])


@pytest.fixture(scope="module")
def course() -> Course:
    return load_course(COURSE_YAML)


@pytest.fixture
def data() -> dict:
    """The repository's course.yaml as plain data, to break one key at a time."""
    return copy.deepcopy(yaml.safe_load(COURSE_YAML.read_text()))


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "course.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load_error(path: Path) -> str:
    with pytest.raises(CourseConfigError) as info:
        load_course(path)
    return str(info.value)


def week_index(data: dict, week_id: str) -> int:
    return next(i for i, w in enumerate(data["weeks"]) if w["id"] == week_id)


# -- the repository's course ------------------------------------------------------------------

def test_repository_course_loads(course):
    assert isinstance(course, Course)
    assert course.title


def test_weeks_in_order(course):
    assert len(course.weeks) == 29
    assert [w.id for w in course.weeks] == WEEK_IDS


def test_modules(course):
    assert [m.id for m in course.modules] == [1, 2, 3]
    assert all(m.title for m in course.modules)
    assert {w.module for w in course.weeks} == {1, 2, 3}
    for week in course.weeks:
        assert week.id.startswith(f"m{week.module}w")


def test_first_week_is_ready_with_its_forbidden_list(course):
    week = course.week("m1w01")
    assert isinstance(week, Week)
    assert week.state == "ready"
    assert week.reference and week.slug == Path(week.reference).stem
    assert week.forbidden == ["timm", "torch.nn.MultiheadAttention", "torch.nn.TransformerEncoderLayer",
                              "torch.nn.TransformerEncoder", "torch.nn.Transformer",
                              "torch.nn.functional.scaled_dot_product_attention",
                              "torch.nn.functional.multi_head_attention_forward"]


def test_ready_weeks_name_a_reference(course):
    for week in course.weeks:
        if week.state == "ready":
            assert week.reference


def test_week_lookup(course):
    assert course.week("m3w21").id == "m3w21"
    assert course.by_id["m2w03"] is course.week("m2w03")


def test_unknown_week_lists_the_known_ones(course):
    with pytest.raises(CourseConfigError) as info:
        course.week("nope")
    message = str(info.value)
    assert "'nope'" in message
    for week_id in WEEK_IDS:
        assert week_id in message


def test_grading_limits(course):
    assert course.grading.test_timeout_s > 0
    assert course.grading.gpu in ("never", "prefer", "require")


def test_loaded_course_is_frozen(course):
    with pytest.raises(pydantic.ValidationError):
        course.title = "changed"  # type: ignore[misc]


def test_minimal_file_gets_defaults(tmp_path):
    path = write(tmp_path, {"title": "T", "modules": [{"id": 1, "title": "M"}],
                            "weeks": [{"id": "m1w01", "module": 1, "title": "W", "category": "theory"}]})
    course = load_course(path)
    week = course.week("m1w01")
    assert week.state == "planned" and week.points == 100 and week.forbidden == [] and week.slug == "m1w01"
    assert course.grading.memory_mb == 4096


# -- invalid files ------------------------------------------------------------------------------

def test_unknown_top_level_key(tmp_path, data):
    data["graders"] = {"x": 1}
    path = write(tmp_path, data)
    message = load_error(path)
    assert str(path) in message and "graders" in message


def test_unknown_key_in_a_week(tmp_path, data):
    data["weeks"][2]["colour"] = "red"
    path = write(tmp_path, data)
    message = load_error(path)
    assert str(path) in message and "weeks[m1w03].colour" in message


def test_week_with_a_wrong_type(tmp_path, data):
    data["weeks"][week_index(data, "m1w02")]["points"] = "lots"
    path = write(tmp_path, data)
    message = load_error(path)
    assert f"{path}: weeks[m1w02].points:" in message


def test_week_with_a_value_out_of_range(tmp_path, data):
    data["weeks"][week_index(data, "m2w04")]["points"] = 0
    path = write(tmp_path, data)
    assert f"{path}: weeks[m2w04].points:" in load_error(path)


def test_grading_limit_with_a_bad_value(tmp_path, data):
    data["grading"]["gpu"] = "maybe"
    path = write(tmp_path, data)
    message = load_error(path)
    assert f"{path}: grading.gpu:" in message and "prefer" in message


def test_every_problem_is_reported(tmp_path, data):
    data["weeks"][0]["points"] = "lots"
    data["weeks"][5]["category"] = "essay"
    path = write(tmp_path, data)
    message = load_error(path)
    assert "weeks[m1w01].points" in message and "weeks[m2w02].category" in message
    assert len(message.splitlines()) == 2


@pytest.mark.parametrize("bad_id", ["week2", "m1w1", "m0w01", "M1W02", "m1w02x"])
def test_bad_week_id(tmp_path, data, bad_id):
    data["weeks"][1]["id"] = bad_id
    path = write(tmp_path, data)
    message = load_error(path)
    assert str(path) in message and f"weeks[{bad_id}].id" in message and "m1w01" in message


def test_duplicate_week_id(tmp_path, data):
    data["weeks"][1]["id"] = "m1w01"
    path = write(tmp_path, data)
    message = load_error(path)
    assert str(path) in message and "twice" in message and "m1w01" in message


def test_week_naming_a_missing_module(tmp_path, data):
    data["weeks"][week_index(data, "m1w03")]["module"] = 9
    path = write(tmp_path, data)
    message = load_error(path)
    assert str(path) in message and "m1w03" in message and "module 9" in message


def test_ready_week_without_reference(tmp_path, data):
    week = data["weeks"][week_index(data, "m1w01")]
    del week["reference"]
    path = write(tmp_path, data)
    message = load_error(path)
    assert f"{path}: weeks[m1w01]" in message and "reference" in message


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "course.yaml"
    message = load_error(path)
    assert str(path) in message and "not found" in message


def test_invalid_yaml(tmp_path):
    path = tmp_path / "course.yaml"
    path.write_text("title: [unclosed\nweeks:\n  - id: m1w01\n")
    message = load_error(path)
    assert str(path) in message and "YAML" in message


@pytest.mark.parametrize("text", ["- title\n- weeks\n", "just a string\n", "42\n", ""])
def test_top_level_that_is_not_a_mapping(tmp_path, text):
    path = tmp_path / "course.yaml"
    path.write_text(text)
    message = load_error(path)
    assert str(path) in message and "mapping" in message


def test_file_that_is_not_text(tmp_path):
    path = tmp_path / "course.yaml"
    path.write_bytes(b"title: Caf\xe9\n")
    assert str(path) in load_error(path)
